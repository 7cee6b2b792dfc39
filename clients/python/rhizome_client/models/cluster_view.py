from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.coordinator_info import CoordinatorInfo
    from ..models.ownership_view import OwnershipView
    from ..models.redis_view import RedisView


T = TypeVar("T", bound="ClusterView")


@_attrs_define
class ClusterView:
    """The node's view of the cluster.

    Attributes:
        degraded (bool): True while no coordinator answers and refreshes run under the Redis
            lock (cluster mode only).
        mode (str): `coordinator.mode`: `embedded`, `redis-lock` or `cluster`.
        node (str): This node's id.
        nodes (list[str]): Nodes this node knows of: itself and every node the coordinator
            assigned a credential to.
        ownership (list[OwnershipView]): Who refreshes each credential of this node, under which epoch.
        redis (RedisView): The shared state backend's health.
        coordinator (CoordinatorInfo | None | Unset):
    """

    degraded: bool
    mode: str
    node: str
    nodes: list[str]
    ownership: list[OwnershipView]
    redis: RedisView
    coordinator: CoordinatorInfo | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.coordinator_info import CoordinatorInfo  # noqa: PLC0415

        degraded = self.degraded

        mode = self.mode

        node = self.node

        nodes = self.nodes

        ownership = []
        for ownership_item_data in self.ownership:
            ownership_item = ownership_item_data.to_dict()
            ownership.append(ownership_item)

        redis = self.redis.to_dict()

        coordinator: dict[str, Any] | None | Unset
        if isinstance(self.coordinator, Unset):
            coordinator = UNSET
        elif isinstance(self.coordinator, CoordinatorInfo):
            coordinator = self.coordinator.to_dict()
        else:
            coordinator = self.coordinator

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "degraded": degraded,
                "mode": mode,
                "node": node,
                "nodes": nodes,
                "ownership": ownership,
                "redis": redis,
            }
        )
        if coordinator is not UNSET:
            field_dict["coordinator"] = coordinator

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.coordinator_info import CoordinatorInfo  # noqa: PLC0415
        from ..models.ownership_view import OwnershipView  # noqa: PLC0415
        from ..models.redis_view import RedisView  # noqa: PLC0415

        d = dict(src_dict)
        degraded = d.pop("degraded")

        mode = d.pop("mode")

        node = d.pop("node")

        nodes = cast(list[str], d.pop("nodes"))

        ownership = []
        _ownership = d.pop("ownership")
        for ownership_item_data in _ownership:
            ownership_item = OwnershipView.from_dict(ownership_item_data)

            ownership.append(ownership_item)

        redis = RedisView.from_dict(d.pop("redis"))

        def _parse_coordinator(data: object) -> CoordinatorInfo | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                coordinator_type_1 = CoordinatorInfo.from_dict(data)

                return coordinator_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(CoordinatorInfo | None | Unset, data)

        coordinator = _parse_coordinator(d.pop("coordinator", UNSET))

        cluster_view = cls(
            degraded=degraded,
            mode=mode,
            node=node,
            nodes=nodes,
            ownership=ownership,
            redis=redis,
            coordinator=coordinator,
        )

        cluster_view.additional_properties = d
        return cluster_view

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
