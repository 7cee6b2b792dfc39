from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="StreamView")


@_attrs_define
class StreamView:
    """One live stream.

    Attributes:
        buffered_events (int): Events held in the replay buffer.
        epoch (int): Producer epoch: grows with every takeover.
        id (str): Stream id (the second part of its event ids).
        last_seq (int): Highest sequence number produced.
        route (str): Route.
        producer (None | str | Unset): Node producing it.
    """

    buffered_events: int
    epoch: int
    id: str
    last_seq: int
    route: str
    producer: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        buffered_events = self.buffered_events

        epoch = self.epoch

        id = self.id

        last_seq = self.last_seq

        route = self.route

        producer: None | str | Unset
        if isinstance(self.producer, Unset):
            producer = UNSET
        else:
            producer = self.producer

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "buffered_events": buffered_events,
                "epoch": epoch,
                "id": id,
                "last_seq": last_seq,
                "route": route,
            }
        )
        if producer is not UNSET:
            field_dict["producer"] = producer

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        buffered_events = d.pop("buffered_events")

        epoch = d.pop("epoch")

        id = d.pop("id")

        last_seq = d.pop("last_seq")

        route = d.pop("route")

        def _parse_producer(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        producer = _parse_producer(d.pop("producer", UNSET))

        stream_view = cls(
            buffered_events=buffered_events,
            epoch=epoch,
            id=id,
            last_seq=last_seq,
            route=route,
            producer=producer,
        )

        stream_view.additional_properties = d
        return stream_view

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
