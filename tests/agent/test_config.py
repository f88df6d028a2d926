from pathlib import Path

import pytest
import yaml

from agent.config import ConfigError, load, validate

BASE = {"marketplace_url": "https://market.example.com/", "token": "gpm_x"}


def test_yaml_with_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "marketplace_url: http://127.0.0.1:8000\ntoken: from-file\npricing:\n  per_gpu_hour: {h100-sxm-80gb: 2400000}\n"
    )
    cfg = load(path, environ={"GPUMARKET_AGENT_TOKEN": "from-env", "GPUMARKET_AGENT_HEARTBEAT_SECONDS": "15"})
    assert (cfg.token, cfg.heartbeat_seconds, cfg.runtime) == ("from-env", 15, "docker")
    assert cfg.pricing.per_gpu_hour == {"h100-sxm-80gb": 2_400_000}
    assert validate(dict(BASE)).marketplace_url == "https://market.example.com"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"token": "x"}, "marketplace_url"),
        ({"marketplace_url": "http://x"}, "token"),
        ({**BASE, "marketplace_url": "ftp://x"}, "http"),
        ({**BASE, "runtime": "podman"}, "runtime"),
        ({**BASE, "heartbeat_seconds": 1}, "heartbeat_seconds"),
        ({**BASE, "heartbeat_seconds": 300}, "heartbeat_seconds"),  # offline by then
        ({**BASE, "heartbeat_seconds": "30"}, "heartbeat_seconds"),
        ({**BASE, "surprise": 1}, "Unknown"),
        ({**BASE, "pricing": {"per_gpu_hour": {"h100-sxm-80gb": -1}}}, "positive"),
        ({**BASE, "pricing": {"colour": "red"}}, "pricing"),
        ({**BASE, "pricing": []}, "pricing"),
        ({**BASE, "declared_inventory": []}, "declared_inventory"),
        ({**BASE, "declared_inventory": {"gpus": [{"count": 1}]}}, "model"),
        ({**BASE, "declared_inventory": {"gpus": [{"model": "h100-sxm-80gb", "count": 0}]}}, r"gpus\.0\.count"),
        ({**BASE, "declared_inventory": {"gpus": [{"model": "h100-sxm-80gb", "count": True}]}}, "count"),
        ({**BASE, "declared_inventory": {"gpus": [{"model": "x", "count": 1, "vram": 8}]}}, "only model"),
        ({**BASE, "declared_inventory": {"cpu_cores": -1}}, "cpu_cores"),
        ({**BASE, "declared_inventory": {"ram": 1}}, "unknown"),
        ({**BASE, "declared_inventory": {"node": 7}}, "node"),
        ({**BASE, "runtime": "kubernetes", "declared_inventory": {"cpu_cores": 8}}, "Docker host"),
    ],
)
def test_bad_configurations_say_what_to_fix(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(data)


def test_missing_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="init"):
        load(tmp_path / "nope.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("marketplace_url: [unclosed")
    with pytest.raises(ConfigError, match="YAML"):
        load(broken, environ={})
    with pytest.raises(ConfigError, match="integer"):
        load(
            None,
            environ={
                **{f"GPUMARKET_AGENT_{k.upper()}": v for k, v in BASE.items()},
                "GPUMARKET_AGENT_HEARTBEAT_SECONDS": "soon",
            },
        )


def test_a_declared_inventory_stands_in_for_discovery() -> None:
    from agent.inventory import declared

    cfg = validate(
        {
            **BASE,
            "declared_inventory": {
                "gpus": [
                    {"model": "h100-sxm-80gb", "count": 2},
                    {"model": "NVIDIA L4", "count": 1, "memory_mib": 23034},
                ],
                "cpu_cores": 32,
                "memory_gib": 256,
                "storage_gib": 1000,
                "node": "rack-1",
            },
        }
    )
    assert validate(yaml.safe_load(cfg.to_yaml())) == cfg  # written and read back unchanged
    report = declared(cfg.declared_inventory).report()
    assert report["gpus"] == [
        {"model": "h100-sxm-80gb", "total": 2, "free": 2},
        {"model": "NVIDIA L4", "memory_mib": 23034, "total": 1, "free": 1},
    ]
    assert report["cpu_cores"] == {"total": 32, "free": 32}
    assert report["nodes"] == [
        {
            "name": "rack-1",
            "gpus": report["gpus"],
            "cpu_cores": {"total": 32, "free": 32},
            "memory_gib": {"total": 256, "free": 256},
            "storage_gib": {"total": 1000, "free": 1000},
        }
    ]
