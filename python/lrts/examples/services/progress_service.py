from __future__ import annotations

import time

from lrts.service import Service


class ProgressTrackedService(Service):
    """Counts to ``iterations`` with a bar, sleeping ``sleep_ms`` per step; returns the count."""

    def __init__(self, iterations: int = 50, sleep_ms: int = 40) -> None:
        super().__init__()
        self.iterations = iterations
        self.sleep_ms = sleep_ms

    def service_name(self) -> str:
        return "Progress Tracked Service Example"

    @staticmethod
    def run(service: ProgressTrackedService) -> int:
        progress_id = service.create_progress(description="Doing Work", color="green",
                                              total=service.iterations, leave=True,
                                              unit="iterations")
        for _ in range(service.iterations):
            time.sleep(service.sleep_ms / 1000)
            service.increment_progress(progress_id=progress_id, amount=1)
        service.close_progress(progress_id=progress_id)
        return service.iterations
