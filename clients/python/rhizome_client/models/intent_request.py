from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.intent_request_headers_type_0 import IntentRequestHeadersType0
    from ..models.intent_request_params_type_0 import IntentRequestParamsType0


T = TypeVar("T", bound="IntentRequest")


@_attrs_define
class IntentRequest:
    """A request to send through a route.

    Attributes:
        path (str): Path sent to the upstream (after the route's prefix handling), e.g. `/v3/x`.
            Segments of URI path characters (`%` only as `%XX`), no `.` or `..`
            segment (nor their `%2e` spellings), no query or fragment.
        route (str): Route name.
        body_base64 (None | str | Unset): Binary body, base64 (standard alphabet, padded, canonical: the bits
            after the last byte are zero); not with `json`.
        headers (IntentRequestHeadersType0 | None | Unset): Extra request headers.
        json (Any | Unset): JSON body, any JSON value (sent as `application/json`).
        method (None | str | Unset): HTTP method (default `GET`).
        params (IntentRequestParamsType0 | None | Unset): Query parameters; arrays repeat the key.
        timeout_ms (int | None | Unset): Upper bound of the whole exchange, in milliseconds (default: the
            route's timeout; larger values are capped at 300000). A whole number
            of at least 1; `1500.0` is 1500.
    """

    path: str
    route: str
    body_base64: None | str | Unset = UNSET
    headers: IntentRequestHeadersType0 | None | Unset = UNSET
    json: Any | Unset = UNSET
    method: None | str | Unset = UNSET
    params: IntentRequestParamsType0 | None | Unset = UNSET
    timeout_ms: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.intent_request_headers_type_0 import IntentRequestHeadersType0  # noqa: PLC0415
        from ..models.intent_request_params_type_0 import IntentRequestParamsType0  # noqa: PLC0415

        path = self.path

        route = self.route

        body_base64: None | str | Unset
        if isinstance(self.body_base64, Unset):
            body_base64 = UNSET
        else:
            body_base64 = self.body_base64

        headers: dict[str, Any] | None | Unset
        if isinstance(self.headers, Unset):
            headers = UNSET
        elif isinstance(self.headers, IntentRequestHeadersType0):
            headers = self.headers.to_dict()
        else:
            headers = self.headers

        json = self.json

        method: None | str | Unset
        if isinstance(self.method, Unset):
            method = UNSET
        else:
            method = self.method

        params: dict[str, Any] | None | Unset
        if isinstance(self.params, Unset):
            params = UNSET
        elif isinstance(self.params, IntentRequestParamsType0):
            params = self.params.to_dict()
        else:
            params = self.params

        timeout_ms: int | None | Unset
        if isinstance(self.timeout_ms, Unset):
            timeout_ms = UNSET
        else:
            timeout_ms = self.timeout_ms

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "path": path,
                "route": route,
            }
        )
        if body_base64 is not UNSET:
            field_dict["body_base64"] = body_base64
        if headers is not UNSET:
            field_dict["headers"] = headers
        if json is not UNSET:
            field_dict["json"] = json
        if method is not UNSET:
            field_dict["method"] = method
        if params is not UNSET:
            field_dict["params"] = params
        if timeout_ms is not UNSET:
            field_dict["timeout_ms"] = timeout_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.intent_request_headers_type_0 import IntentRequestHeadersType0  # noqa: PLC0415
        from ..models.intent_request_params_type_0 import IntentRequestParamsType0  # noqa: PLC0415

        d = dict(src_dict)
        path = d.pop("path")

        route = d.pop("route")

        def _parse_body_base64(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        body_base64 = _parse_body_base64(d.pop("body_base64", UNSET))

        def _parse_headers(data: object) -> IntentRequestHeadersType0 | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                headers_type_0 = IntentRequestHeadersType0.from_dict(data)

                return headers_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(IntentRequestHeadersType0 | None | Unset, data)

        headers = _parse_headers(d.pop("headers", UNSET))

        json = d.pop("json", UNSET)

        def _parse_method(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        method = _parse_method(d.pop("method", UNSET))

        def _parse_params(data: object) -> IntentRequestParamsType0 | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                params_type_0 = IntentRequestParamsType0.from_dict(data)

                return params_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(IntentRequestParamsType0 | None | Unset, data)

        params = _parse_params(d.pop("params", UNSET))

        def _parse_timeout_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        timeout_ms = _parse_timeout_ms(d.pop("timeout_ms", UNSET))

        intent_request = cls(
            path=path,
            route=route,
            body_base64=body_base64,
            headers=headers,
            json=json,
            method=method,
            params=params,
            timeout_ms=timeout_ms,
        )

        return intent_request
