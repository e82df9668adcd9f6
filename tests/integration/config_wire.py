"""DescribeConfigs v4 over the raw wire: every field (type, documentation, synonyms) of every
config, which confluent-kafka's AdminClient does not expose (it has no `config_type`)."""

import struct

import wire

DESCRIBE_CONFIGS = 32
TYPE_NAMES = {0: "UNKNOWN", 1: "BOOLEAN", 2: "STRING", 3: "INT", 4: "SHORT", 5: "LONG", 6: "DOUBLE",
              7: "LIST", 8: "CLASS", 9: "PASSWORD"}
SOURCE_NAMES = {-1: "UNKNOWN", 0: "UNKNOWN", 1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG",
                3: "DYNAMIC_DEFAULT_BROKER_CONFIG", 4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG",
                6: "DYNAMIC_BROKER_LOGGER_CONFIG", 7: "CLIENT_METRICS_CONFIG", 8: "GROUP_CONFIG"}


def describe_configs(broker, resource_type: int, name: str, documentation=True):
    """(error_code, error_message, {name: {"value", "read_only", "source", "sensitive",
    "synonyms": [(name, value, source)], "type", "documentation"}}) with names for the codes."""
    resource = struct.pack(">b", resource_type) + wire._cstr(name) + wire._carray(None) + wire._TAGS
    body = wire._carray([resource]) + struct.pack(">??", True, documentation) + wire._TAGS
    with wire.Connection(broker.host, broker.port) as c:
        r = c.request(DESCRIBE_CONFIGS, 4, body)
    r.i32()  # throttle

    def synonym():
        s = (r.cstr(), r.cstr(), SOURCE_NAMES.get(r.i8(), "?"))
        r.tags()
        return s

    def config():
        e = {"name": r.cstr(), "value": r.cstr(), "read_only": r.boolean(),
             "source": SOURCE_NAMES.get(r.i8(), "?"), "sensitive": r.boolean(),
             "synonyms": r.carray(synonym), "type": TYPE_NAMES.get(r.i8(), "?"),
             "documentation": r.cstr()}
        r.tags()
        return e

    def result():
        error, message = r.i16(), r.cstr()
        r.i8(), r.cstr()
        configs = r.carray(config) or []
        r.tags()
        return error, message, {e.pop("name"): e for e in configs}

    (res,) = r.carray(result)
    return res
