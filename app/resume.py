"""Resumable generation: a small state file beside the output (the latents after the last saved denoising step,
the step, the scheduler's history, and a fingerprint of the inputs and settings), so a killed run started again
with the same arguments continues where it stopped and writes the identical video.

The file is safetensors (tensors and a JSON header): reading it runs no code."""

import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from modules.checkpoints import atomic_path, file_sha256
from modules.errors import NoSpaceError, VExpressError, out_of_space

from pipelines.pipeline_v_express import DenoisingState


def state_path(output_path: str | Path) -> Path:
    """Where the state of a run writing `output_path` lives: a hidden file beside it."""
    output_path = Path(output_path)
    return output_path.with_name(f".{output_path.name}.resume.safetensors")


def fingerprint(files: dict[str, str | Path | None], settings: dict) -> str:
    """One digest of the input files' contents and every setting the latents depend on."""
    described = {name: file_sha256(path) if path else None for name, path in sorted(files.items())}
    return hashlib.sha256(json.dumps([described, settings], sort_keys=True, default=str).encode()).hexdigest()


def load_state(path: Path, expected_fingerprint: str, report=print) -> DenoisingState | None:
    """The saved state if `path` holds one for this very run; otherwise None, saying why when a file was there."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as file:
            meta = json.loads(file.metadata()["resume"])
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        report(f"note: {path}: unreadable resume state ({error}); starting from the first step")
        return None
    if meta.get("fingerprint") != expected_fingerprint:
        report(f"note: {path} is from a run with other inputs or settings; starting from the first step")
        return None
    scheduler = dict(meta["scheduler"])
    for name, length in meta["scheduler_lists"].items():
        scheduler[name] = [tensors.get(f"scheduler.{name}.{i}", meta["scheduler_list_values"].get(f"{name}.{i}")) for i in range(length)]
    for name in meta["scheduler_tensors"]:
        scheduler[name] = tensors[f"scheduler.{name}"]
    return DenoisingState(meta["step"], tensors["latents"], scheduler)


class StateWriter:
    """The pipeline's `callback_on_step_end`: saves the state atomically, at most every `interval` seconds and
    only after steps a resumed run can continue from exactly; keeps the last such state in memory, for
    `save_latest` when the run stops early. `resumed_from`: the state the file holds already."""

    def __init__(self, path: Path, run_fingerprint: str, interval: float = 60.0, resumed_from: DenoisingState | None = None):
        self.path, self.fingerprint, self.interval = path, run_fingerprint, interval
        self._last = time.monotonic()
        self.latest = self.saved = resumed_from

    def __call__(self, pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        if callback_kwargs["resumable"]:
            # A copy: the next step changes the latents in place (and a Ctrl-C can land in the middle of it).
            self.latest = pipeline.denoising_state(step, callback_kwargs["latents"].clone())
            if time.monotonic() - self._last >= self.interval:
                self.save(self.latest)
                self._last = time.monotonic()
        return callback_kwargs

    def save_latest(self) -> int | None:
        """When the run stops early: the last state it can continue from saved, unless the file holds it already.
        Returns the step the file holds (None: no file). A save that fails (the disk full) leaves the file as it was."""
        if self.latest is not self.saved:
            try:
                self.save(self.latest)
            except (VExpressError, OSError, SafetensorError):
                pass
        return self.saved.step if self.saved else None

    def save(self, state: DenoisingState) -> None:
        tensors = {"latents": state.latents.detach().cpu().contiguous()}
        meta = {"fingerprint": self.fingerprint, "step": state.step, "scheduler": {}, "scheduler_tensors": [],
                "scheduler_lists": {}, "scheduler_list_values": {}}
        for name, value in state.scheduler.items():
            if isinstance(value, torch.Tensor):
                tensors[f"scheduler.{name}"] = value.detach().cpu().contiguous()
                meta["scheduler_tensors"].append(name)
            elif isinstance(value, list):
                meta["scheduler_lists"][name] = len(value)
                for i, item in enumerate(value):
                    if isinstance(item, torch.Tensor):
                        tensors[f"scheduler.{name}.{i}"] = item.detach().cpu().contiguous()
                    else:
                        meta["scheduler_list_values"][f"{name}.{i}"] = item
            else:
                meta["scheduler"][name] = value
        try:
            with atomic_path(self.path) as partial:
                save_file(tensors, partial, metadata={"resume": json.dumps(meta)})
        except (OSError, SafetensorError) as error:
            if not out_of_space(self.path.parent, str(error)):
                raise
            raise NoSpaceError(self.path, sum(tensor.nbytes for tensor in tensors.values())) from None
        self.saved = state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
