from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.credential_view_claims_type_0 import CredentialViewClaimsType0


T = TypeVar("T", bound="CredentialView")


@_attrs_define
class CredentialView:
    """What the admin API shows of a credential; never the token.

    Attributes:
        epoch (str): Fencing epoch of its refreshes, `assignment.lock` (the raft index of
            the assignment, 0 without a coordinator).
        failures (int): Consecutive failures.
        has_token (bool): Whether a token is cached.
        kind (str): Kind (`static`, `oauth2_client_credentials`, `jwt`).
        name (str): Name.
        owner (str): Node that refreshes it.
        claims (CredentialViewClaimsType0 | None | Unset): Non-secret JWT claims (`iss`, `sub`, `aud`, `scope`,
            `exp`...).
        cooldown (float | None | Unset): Seconds of cooldown left.
        expires_at (int | None | Unset): Expiry as a Unix timestamp.
        expires_in (int | None | Unset): Seconds until the cached token expires.
        version (int | None | Unset): Version of the cached token.
    """

    epoch: str
    failures: int
    has_token: bool
    kind: str
    name: str
    owner: str
    claims: CredentialViewClaimsType0 | None | Unset = UNSET
    cooldown: float | None | Unset = UNSET
    expires_at: int | None | Unset = UNSET
    expires_in: int | None | Unset = UNSET
    version: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.credential_view_claims_type_0 import CredentialViewClaimsType0  # noqa: PLC0415

        epoch = self.epoch

        failures = self.failures

        has_token = self.has_token

        kind = self.kind

        name = self.name

        owner = self.owner

        claims: dict[str, Any] | None | Unset
        if isinstance(self.claims, Unset):
            claims = UNSET
        elif isinstance(self.claims, CredentialViewClaimsType0):
            claims = self.claims.to_dict()
        else:
            claims = self.claims

        cooldown: float | None | Unset
        if isinstance(self.cooldown, Unset):
            cooldown = UNSET
        else:
            cooldown = self.cooldown

        expires_at: int | None | Unset
        if isinstance(self.expires_at, Unset):
            expires_at = UNSET
        else:
            expires_at = self.expires_at

        expires_in: int | None | Unset
        if isinstance(self.expires_in, Unset):
            expires_in = UNSET
        else:
            expires_in = self.expires_in

        version: int | None | Unset
        if isinstance(self.version, Unset):
            version = UNSET
        else:
            version = self.version

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "epoch": epoch,
                "failures": failures,
                "has_token": has_token,
                "kind": kind,
                "name": name,
                "owner": owner,
            }
        )
        if claims is not UNSET:
            field_dict["claims"] = claims
        if cooldown is not UNSET:
            field_dict["cooldown"] = cooldown
        if expires_at is not UNSET:
            field_dict["expires_at"] = expires_at
        if expires_in is not UNSET:
            field_dict["expires_in"] = expires_in
        if version is not UNSET:
            field_dict["version"] = version

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.credential_view_claims_type_0 import CredentialViewClaimsType0  # noqa: PLC0415

        d = dict(src_dict)
        epoch = d.pop("epoch")

        failures = d.pop("failures")

        has_token = d.pop("has_token")

        kind = d.pop("kind")

        name = d.pop("name")

        owner = d.pop("owner")

        def _parse_claims(data: object) -> CredentialViewClaimsType0 | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                claims_type_0 = CredentialViewClaimsType0.from_dict(data)

                return claims_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(CredentialViewClaimsType0 | None | Unset, data)

        claims = _parse_claims(d.pop("claims", UNSET))

        def _parse_cooldown(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        cooldown = _parse_cooldown(d.pop("cooldown", UNSET))

        def _parse_expires_at(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expires_at = _parse_expires_at(d.pop("expires_at", UNSET))

        def _parse_expires_in(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expires_in = _parse_expires_in(d.pop("expires_in", UNSET))

        def _parse_version(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        version = _parse_version(d.pop("version", UNSET))

        credential_view = cls(
            epoch=epoch,
            failures=failures,
            has_token=has_token,
            kind=kind,
            name=name,
            owner=owner,
            claims=claims,
            cooldown=cooldown,
            expires_at=expires_at,
            expires_in=expires_in,
            version=version,
        )

        credential_view.additional_properties = d
        return credential_view

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
