"""The load stages of a result (``RunResult.stages``) as flat CSV columns of the results
export: per stage its time, RSS increase and RSS peak increase, and whether the model
file was dropped from the page cache before the cold load."""

from typing import Dict, Optional

from edgefarm.shared.contract.schemas import ResultOut

STAGES = ("cold_load", "warm_load", "first_inference", "steady_inference")
FIGURES = ("ms", "rss_increase_bytes", "rss_peak_increase_bytes")
STAGE_COLUMNS = tuple(f"{stage}_{figure}" for stage in STAGES for figure in FIGURES) + ("cache_dropped",)


def stage_cells(result: ResultOut) -> Dict[str, Optional[object]]:
    """``STAGE_COLUMNS`` of one result; empty where it has no stages."""
    stages = result.stages
    cells: Dict[str, Optional[object]] = dict.fromkeys(STAGE_COLUMNS)
    if stages is None or stages.not_available:
        return cells
    for stage in stages.stages:
        if stage.name in STAGES:
            cells[f"{stage.name}_ms"] = stage.ms
            cells[f"{stage.name}_rss_increase_bytes"] = stage.rss_increase_bytes
            cells[f"{stage.name}_rss_peak_increase_bytes"] = stage.rss_peak_increase_bytes
    cells["cache_dropped"] = stages.cache_dropped
    return cells
