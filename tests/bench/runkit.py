"""Helpers of the benchmarks that drive real runs: a producer of runs in batches, a process tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from scheduler.dispatch import Phase, RunStep, step_actor_name
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import RunStatus


@dataclass(kw_only=True)
class RunProducer:
    """Records manual runs of one job in batches (one insert for the runs, one for their events), sends each."""

    engine: Engine
    broker: Any
    registry: JobTypeRegistry
    job_id: int

    def produce(self, count: int, *, batch: int) -> list[int]:
        """Record ``count`` runs and send them; returns their ids in order."""
        from dramatiq import Message

        with self.engine.connect() as conn:
            job_type = str(conn.execute(text("SELECT job_type FROM job WHERE id = :id"),
                                        {"id": self.job_id}).scalar_one())
        queue = self.registry.get(job_type).queue
        ids: list[int] = []
        for start in range(0, count, batch):
            size = min(batch, count - start)
            with self.engine.begin() as conn:
                new = [int(r[0]) for r in conn.execute(text(
                    "INSERT INTO job_run (job_id, job_type, trigger, status, preview, run_properties, created_by, "
                    "created_at, attempt, chunks_total, chunks_done, summary) "
                    "SELECT :job, :type, 'MANUAL', :created, false, '{}', 'bench', now(), 0, 0, 0, '{}' "
                    "FROM generate_series(1, :n) RETURNING id"),
                    {"job": self.job_id, "type": job_type, "created": RunStatus.CREATED, "n": size})]
                conn.execute(text(
                    "INSERT INTO run_event (run_id, from_status, to_status, at, actor, note) "
                    "SELECT id, NULL, :created, now(), 'bench', 'manual run' FROM unnest(CAST(:ids AS integer[])) id"),
                    {"ids": new, "created": RunStatus.CREATED})
            for run_id in new:
                step = RunStep(run_id=run_id, phase=Phase.PLAN)
                self.broker.enqueue(Message(queue_name=queue, actor_name=step_actor_name(queue),
                                            args=(step.run_id, step.phase, step.chunk_no), kwargs={}, options={}))
            with self.engine.begin() as conn:
                conn.execute(text("UPDATE job_run SET enqueued_at = now() WHERE id = ANY(:ids)"), {"ids": new})
            ids += new
        return ids


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux ``/proc``)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += process_tree(int(child))
    return found
