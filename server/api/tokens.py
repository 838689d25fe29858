"""Tokens (admin only): create, list, revoke."""

from typing import List

from fastapi import APIRouter, Depends

from edgefarm.shared.contract.schemas import TokenCreate, TokenOut

from ..auth import Principal
from ..context import AppContext
from ..services import tokens
from .bodies import ContractRoute
from .deps import RowId, admin, get_ctx

router = APIRouter(prefix="/tokens", tags=["tokens"], route_class=ContractRoute)


@router.post("", response_model=TokenOut, status_code=201)
def create_token(
    body: TokenCreate, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin)
) -> TokenOut:
    return tokens.create_token(ctx, body)


@router.get("", response_model=List[TokenOut])
def list_tokens(ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin)) -> List[TokenOut]:
    return tokens.list_tokens(ctx)


@router.delete("/{token_id}", response_model=TokenOut)
def revoke_token(
    token_id: RowId, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin)
) -> TokenOut:
    return tokens.revoke_token(ctx, token_id)
