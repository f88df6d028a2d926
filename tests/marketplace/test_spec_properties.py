"""Properties of the workload-file parser, over generated input: any text or value is either a spec
within every limit or a validation error (never another exception), and a valid spec reads back
the same from YAML and from JSON."""

import json
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.api.parsers import load_yaml
from marketplace import spec as limits
from marketplace.spec import OrderSpec, OrderSpecSerializer

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON-like value: what a YAML or JSON body can hold.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
FIELDS = ["version", "name", "workload", "resources", "duration_hours", "max_price_per_hour", "bid_window_seconds"]
# Argument text: anything but NUL (refused) and YAML's own line breaks (NEL, LS, PS), which PyYAML's
# emitter writes unescaped so that the text it writes reads back as a space.
argument = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\x85\u2028\u2029"), max_size=30
)
words = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)
images = st.builds(
    lambda registry, path, tag: f"{registry}{path}:{tag}",
    st.sampled_from(["", "ghcr.io/", "registry.example.com:5000/"]),
    st.lists(words, min_size=1, max_size=3).map("/".join),
    words,
)
valid_specs = st.fixed_dictionaries(
    {
        "version": st.just("1"),
        "name": st.text(alphabet=string.ascii_letters + " -_", max_size=60).map(str.strip),
        "workload": st.fixed_dictionaries(
            {
                "image": images,
                "command": st.lists(argument, max_size=4),
                "args": st.lists(argument, max_size=4),
                "ports": st.lists(
                    st.fixed_dictionaries({"port": st.integers(1, 65535), "protocol": st.sampled_from(["tcp", "udp"])}),
                    max_size=3,
                    unique_by=lambda p: (p["port"], p["protocol"]),
                ),
            }
        ),
        "resources": st.fixed_dictionaries(
            {
                "gpu_count": st.integers(1, 8),
                "gpu_models": st.just(["h100-sxm-80gb"]),
                "cpu_cores": st.integers(1, 64),
                "memory_gib": st.integers(1, 512),
                "storage_gib": st.integers(1, 2000),
            }
        ),
        "duration_hours": st.integers(1, 720),
        "max_price_per_hour": st.integers(1, limits.MAX_PRICE_PER_HOUR),
        "bid_window_seconds": st.integers(10, 3600),
        "pricing_rule": st.sampled_from(["first_price", "second_price"]),
    }
)


def read(data: object) -> OrderSpec | dict:
    serializer = OrderSpecSerializer(data=data)
    if serializer.is_valid():
        return serializer.validated_data["spec"]
    return serializer.errors


def within_limits(spec: OrderSpec) -> None:
    assert limits.image_problem(spec.image) is None
    assert spec.gpu_count >= 1 and 1 <= spec.duration_hours <= 720
    assert 1 <= spec.max_price_per_hour <= limits.MAX_PRICE_PER_HOUR
    assert len(spec.command) <= limits.MAX_ARGV and len(spec.args) <= limits.MAX_ARGV
    assert all(isinstance(a, str) and "\x00" not in a for a in spec.command + spec.args)
    assert len(spec.env) <= limits.MAX_ENV and len(spec.ports) <= limits.MAX_PORTS
    assert all(1 <= p["port"] <= 65535 for p in spec.ports)


@SETTINGS
@given(st.text(max_size=400))
def test_any_text_is_yaml_or_a_clear_error(text: str) -> None:
    try:
        data = load_yaml(text)
    except ValueError as exc:
        assert str(exc).startswith("Malformed YAML")
        return
    result = read(data)
    if isinstance(result, OrderSpec):
        within_limits(result)


@SETTINGS
@given(st.one_of(json_values, st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, json_values))))
def test_any_value_is_a_spec_within_limits_or_field_errors(data: object) -> None:
    result = read(data)
    if isinstance(result, OrderSpec):
        within_limits(result)
    else:
        assert isinstance(result, dict) and result  # the fields that are wrong, by name


@SETTINGS
@given(valid_specs)
def test_a_valid_spec_reads_the_same_from_yaml_and_json(data: dict) -> None:
    from_json = read(json.loads(json.dumps(data)))
    from_yaml = read(load_yaml(yaml.safe_dump(data, sort_keys=False, allow_unicode=True)))
    assert isinstance(from_json, OrderSpec), from_json
    assert from_yaml == from_json
    within_limits(from_json)
    assert from_json.image == data["workload"]["image"] and from_json.args == data["workload"]["args"]
