"""Markdown tables as a Markdown parser reads them (markdown-it-py, which rich
brings along, with GFM tables enabled): the text of each table's header and body
cells, with the heading that precedes it."""

from typing import Dict, List

from markdown_it import MarkdownIt


def parse_tables(text: str) -> List[Dict[str, object]]:
    """``[{"heading": str, "header": [..], "rows": [[..], ..]}]`` in document order."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables: List[Dict[str, object]] = []
    heading = ""
    in_heading = in_head = False
    current: Dict[str, object] = {}
    row: List[str] = []
    for token in tokens:
        if token.type == "heading_open":
            in_heading = True
        elif token.type == "heading_close":
            in_heading = False
        elif token.type == "inline" and in_heading:
            heading = token.content
        elif token.type == "table_open":
            current = {"heading": heading, "header": [], "rows": []}
        elif token.type == "thead_open":
            in_head = True
        elif token.type == "thead_close":
            in_head = False
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and current:
            row.append(token.content)
        elif token.type == "tr_close":
            if in_head:
                current["header"] = row
            else:
                current["rows"].append(row)  # type: ignore[union-attr]
        elif token.type == "table_close":
            tables.append(current)
            current = {}
    return tables
