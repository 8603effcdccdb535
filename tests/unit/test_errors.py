from kazru.domain.errors import BY_KIND, Kind
from kazru.grpc.errors import GRPC_CODE
from services.gateway.http_errors import HTTP_STATUS


def test_every_kind_has_one_http_status_and_grpc_code_and_class():
    assert set(HTTP_STATUS) == set(Kind)
    assert set(GRPC_CODE) == set(Kind)
    assert set(BY_KIND) == set(Kind)


def test_statuses_follow_the_contract():
    assert HTTP_STATUS[Kind.GONE] == 410
    assert HTTP_STATUS[Kind.TOO_LARGE] == 413
    assert HTTP_STATUS[Kind.UNSUPPORTED_MEDIA] == 415
    assert HTTP_STATUS[Kind.UNAVAILABLE] == 503
