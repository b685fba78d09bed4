"""The fine-tuning settings have one source: finetune/config.py's bound table, request mapping and `auto`."""

from __future__ import annotations

import dataclasses

import pytest

from finetune.config import (
    BOUNDS,
    DEFAULT_LEARNING_RATE,
    HYPERPARAMETERS,
    REQUEST_FIELDS,
    Bound,
    TrainConfig,
    config_from_request,
    request_fields,
    resolve_auto,
)
from server.fine_tuning.protocol import CreateJob, Hyperparameters, LoraOptions, TrainingOptions
from tests.helpers import MODEL, assert_error

FIELD_TYPES = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}


def outside(setting: str) -> list:
    """Values just outside the setting's bound, on each side it has."""
    bound = BOUNDS[setting]
    if bound.min_length is not None:
        return [[]]
    step = 1 if FIELD_TYPES.get(setting, float) is int else 1e-6
    values = []
    if bound.ge is not None:
        values.append(bound.ge - step)
    if bound.gt is not None:
        values.append(bound.gt)
    if bound.le is not None:
        values.append(bound.le + step)
    if bound.lt is not None:
        values.append(bound.lt)
    return values


def test_the_request_models_have_the_mapped_fields():
    by_object: dict[str, set[str]] = {}
    for obj, name in REQUEST_FIELDS.values():
        by_object.setdefault(obj, set()).add(name)
    assert by_object["hyperparameters"] == set(Hyperparameters.model_fields) == set(HYPERPARAMETERS)
    assert by_object["lora"] == set(LoraOptions.model_fields)
    assert by_object["training"] == set(TrainingOptions.model_fields)
    assert set(REQUEST_FIELDS) - {"learning_rate_multiplier"} <= set(FIELD_TYPES)


@pytest.mark.parametrize(
    ("setting", "value"), [(s, v) for s in REQUEST_FIELDS if s in BOUNDS for v in outside(s)]
)
def test_api_and_train_config_refuse_the_same_values(client, setting, value):
    obj, name = REQUEST_FIELDS[setting]
    body = {"model": MODEL, "training_file": "file-x", obj: {name: value}}
    assert_error(client.post("/v1/fine_tuning/jobs", json=body), 400, f"{obj}.{name}")
    with pytest.raises(ValueError, match=setting):
        if setting in FIELD_TYPES:
            TrainConfig(**{setting: value})
        else:
            config_from_request({setting: value}, None, None, seed=0)


@pytest.mark.parametrize("setting", [s for s in BOUNDS if s not in REQUEST_FIELDS])
def test_settings_only_train_config_takes_are_checked_too(setting):
    for value in outside(setting):
        with pytest.raises(ValueError, match=setting):
            TrainConfig(**{setting: value})


def test_the_seed_bound_is_the_table_one(client):
    assert CreateJob.model_fields["seed"].metadata  # the limits are on the field
    for value in outside("seed"):
        body = {"model": MODEL, "training_file": "file-x", "seed": value}
        assert_error(client.post("/v1/fine_tuning/jobs", json=body), 400, "seed")


def test_hyperparameters_under_method_are_checked_alike(client):
    body = {
        "model": MODEL,
        "training_file": "file-x",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 0}}},
    }
    response = client.post("/v1/fine_tuning/jobs", json=body)
    assert_error(response, 400, "method.supervised.hyperparameters.batch_size")


def test_bounds_read_as_intervals():
    assert BOUNDS["n_epochs"].describe() == "in [1, 50]"
    assert BOUNDS["learning_rate_multiplier"].describe() == "in (0, 10]"
    assert BOUNDS["lora_dropout"].describe() == "in [0, 1)"
    assert BOUNDS["checkpoint_every"].describe() == "at least 1"
    assert Bound(lt=3).describe() == "below 3"
    assert BOUNDS["target_modules"].describe() == "not empty"
    assert BOUNDS["learning_rate_multiplier"].pydantic() == {"gt": 0, "le": 10}


@pytest.mark.parametrize(
    ("n_examples", "epochs", "batch"),
    [(0, 10, 1), (1, 10, 1), (20, 10, 2), (40, 5, 5), (67, 3, 8), (100, 3, 8), (5000, 3, 8)],
)
def test_auto_gives_the_documented_numbers(n_examples, epochs, batch):
    requested = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
    hyperparameters, config = resolve_auto(requested, n_examples, TrainConfig())
    assert hyperparameters == {"n_epochs": epochs, "batch_size": batch, "learning_rate_multiplier": 1.0}
    assert (config.n_epochs, config.batch_size) == (epochs, batch)
    assert config.learning_rate == DEFAULT_LEARNING_RATE == TrainConfig().learning_rate
    assert config.micro_batch_size is None  # auto: chosen by the recipe for its device


def test_explicit_hyperparameters_are_kept_and_the_multiplier_scales_the_default_rate():
    requested, base = config_from_request(
        {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5},
        {"r": 4, "target_modules": ["q_proj"], "unknown": 1},
        {"train_on_prompts": True, "micro_batch_size": 2, "rehearsal_ratio": None},
        seed=7,
    )
    assert requested == {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5}
    assert (base.n_epochs, base.lora_r, base.target_modules, base.seed) == (2, 4, ("q_proj",), 7)
    assert base.train_on_prompts is True and base.rehearsal_ratio == TrainConfig().rehearsal_ratio
    hyperparameters, config = resolve_auto(requested, 40, base)
    assert hyperparameters == {"n_epochs": 2, "batch_size": 5, "learning_rate_multiplier": 0.5}
    assert config.learning_rate == pytest.approx(DEFAULT_LEARNING_RATE * 0.5)
    assert config.micro_batch_size == 2 and config.seed == 7
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_the_cli_builds_the_request_objects_the_server_reads():
    settings = {"n_epochs": 4, "learning_rate_multiplier": None, "lora_r": 8, "max_length": 256}
    fields = request_fields(settings)
    assert fields == {"hyperparameters": {"n_epochs": 4}, "lora": {"r": 8}, "training": {"max_length": 256}}
    requested, config = config_from_request(fields["hyperparameters"], fields["lora"], fields["training"], 0)
    assert requested["n_epochs"] == 4 and requested["learning_rate_multiplier"] == "auto"
    assert (config.n_epochs, config.lora_r, config.max_length) == (4, 8, 256)
