from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="CoordinatorInfo")


@_attrs_define
class CoordinatorInfo:
    """The coordinator's last answer, as this node acted on it.

    Attributes:
        applied (int): Applied raft log index of that answer.
        leader (int): The leader's replica id.
        leader_url (str): The leader's URL.
        term (int): The leader's raft term.
        acked_ms_ago (int | None | Unset): Milliseconds since the last acknowledged heartbeat was sent.
    """

    applied: int
    leader: int
    leader_url: str
    term: int
    acked_ms_ago: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        applied = self.applied

        leader = self.leader

        leader_url = self.leader_url

        term = self.term

        acked_ms_ago: int | None | Unset
        if isinstance(self.acked_ms_ago, Unset):
            acked_ms_ago = UNSET
        else:
            acked_ms_ago = self.acked_ms_ago

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "applied": applied,
                "leader": leader,
                "leader_url": leader_url,
                "term": term,
            }
        )
        if acked_ms_ago is not UNSET:
            field_dict["acked_ms_ago"] = acked_ms_ago

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        applied = d.pop("applied")

        leader = d.pop("leader")

        leader_url = d.pop("leader_url")

        term = d.pop("term")

        def _parse_acked_ms_ago(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        acked_ms_ago = _parse_acked_ms_ago(d.pop("acked_ms_ago", UNSET))

        coordinator_info = cls(
            applied=applied,
            leader=leader,
            leader_url=leader_url,
            term=term,
            acked_ms_ago=acked_ms_ago,
        )

        coordinator_info.additional_properties = d
        return coordinator_info

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
