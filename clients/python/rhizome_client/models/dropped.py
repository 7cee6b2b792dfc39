from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="Dropped")


@_attrs_define
class Dropped:
    """Result of dropping a token.

    Attributes:
        name (str): Credential name.
        dropped_version (int | None | Unset): Version dropped, if a token was cached.
    """

    name: str
    dropped_version: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        name = self.name

        dropped_version: int | None | Unset
        if isinstance(self.dropped_version, Unset):
            dropped_version = UNSET
        else:
            dropped_version = self.dropped_version

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "name": name,
            }
        )
        if dropped_version is not UNSET:
            field_dict["dropped_version"] = dropped_version

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        name = d.pop("name")

        def _parse_dropped_version(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        dropped_version = _parse_dropped_version(d.pop("dropped_version", UNSET))

        dropped = cls(
            name=name,
            dropped_version=dropped_version,
        )

        dropped.additional_properties = d
        return dropped

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
