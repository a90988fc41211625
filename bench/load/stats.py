"""Per-operation figures of a load run: count, errors, throughput, p50/p95/p99."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass
class OpStats:
    latencies: list[float] = field(default_factory=list)  # seconds, successful and failed alike
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)  # the first few error answers, for the log

    def add(self, seconds: float, status: int, ok: bool, detail: str = "") -> None:
        self.latencies.append(seconds)
        self.statuses[status] += 1
        if not ok:
            self.errors += 1
            if len(self.samples) < 3:
                self.samples.append(f"{status}: {detail[:300]}")

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {"requests": len(lat), "errors": self.errors, "rps": len(lat) / seconds if seconds else 0.0,
                "p50_ms": percentile(lat, 50) * 1000, "p95_ms": percentile(lat, 95) * 1000,
                "p99_ms": percentile(lat, 99) * 1000, "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "error_samples": self.samples}
