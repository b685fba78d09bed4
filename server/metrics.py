"""Prometheus metrics of one app: HTTP requests and latency (instrumentator), tokens, time to first token."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.prompt_tokens = Counter(
            "ragtune_prompt_tokens", "Prompt tokens processed", ["model"], registry=self.registry
        )
        self.completion_tokens = Counter(
            "ragtune_completion_tokens", "Completion tokens generated", ["model"], registry=self.registry
        )
        self.chat_requests = Counter(
            "ragtune_chat_requests",
            "Chat completions by outcome",
            ["model", "finish_reason"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "ragtune_time_to_first_token_seconds",
            "Time from request to first generated token",
            ["model"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.e2e = Histogram(
            "ragtune_chat_latency_seconds",
            "Time from request to last generated token",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self._engine_running = Gauge(
            "ragtune_engine_running_sequences", "Sequences being decoded", registry=self.registry
        )
        self._engine_waiting = Gauge(
            "ragtune_engine_waiting_sequences", "Sequences queued for the engine", registry=self.registry
        )

    def watch_engine(self, stats: Callable[[], dict[str, int]]) -> None:
        self._engine_running.set_function(lambda: stats()["running"])
        self._engine_waiting.set_function(lambda: stats()["waiting"])
