"""Contains all the data models used in inputs/outputs"""

from .cluster_view import ClusterView
from .coordinator_info import CoordinatorInfo
from .credential_list import CredentialList
from .credential_view import CredentialView
from .credential_view_claims_type_0 import CredentialViewClaimsType0
from .dropped import Dropped
from .error_body import ErrorBody
from .error_detail import ErrorDetail
from .health import Health
from .intent_request import IntentRequest
from .intent_request_headers_type_0 import IntentRequestHeadersType0
from .intent_request_params_type_0 import IntentRequestParamsType0
from .intent_response import IntentResponse
from .intent_response_headers import IntentResponseHeaders
from .ownership_view import OwnershipView
from .redis_view import RedisView
from .session_list import SessionList
from .session_view import SessionView
from .stream_list import StreamList
from .stream_view import StreamView

__all__ = (
    "ClusterView",
    "CoordinatorInfo",
    "CredentialList",
    "CredentialView",
    "CredentialViewClaimsType0",
    "Dropped",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "IntentRequest",
    "IntentRequestHeadersType0",
    "IntentRequestParamsType0",
    "IntentResponse",
    "IntentResponseHeaders",
    "OwnershipView",
    "RedisView",
    "SessionList",
    "SessionView",
    "StreamList",
    "StreamView",
)
