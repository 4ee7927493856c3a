"""Trackers a run's records also go to, beside the run folder: the `logger` config group.

`logger=tensorboard` (the default) writes RUN/tb/; `logger=wandb` a Weights & Biases run (offline by default:
RUN/wandb/, uploaded later with `wandb sync`); `logger=[tensorboard,wandb]` both. Each selected option puts
its settings under `logger.<name>`, and the keys of `logger` are the loggers that run.

Whatever the loggers, the run folder stays the source of truth: metrics.jsonl, samples/, curves.png and the
checkpoints are written by the RunWriter whatever is chosen here, and `genlab report` reads only those. A
logger gets, from the RunWriter on rank 0 only:
- start(run_dir, cfg, resumed): once per process; the resolved config is logged here, once (not again on
  resume, where the copied history holds it);
- scalars(tags, step): {tag: value}, tags as TensorBoard's (train/..., test/..., perf/..., lr/...);
- image(tag, array, step): an HxWx3 uint8 array (sample grids, figures);
- final(params, metrics, step): at the end of a sweep job, its overrides and final numbers (TensorBoard's
  HParams tab, the wandb run's summary);
- close().
A new logger is a class registered here with @LOGGERS.register(name), a config file configs/logger/<name>.yaml
holding `<name>: {settings}`, and optionally a `check(settings)` that names a missing package in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from genlab.core import files
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write
from genlab.core.registry import Registry

LOGGERS = Registry("logger")
DEFAULT = {"tensorboard": {}}  # runs made before the logger group existed


def sweep_overrides() -> list[str] | None:
    """The task overrides of a Hydra multirun job (its hyper-parameters), or None outside a sweep."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return None
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return list(HydraConfig.get().overrides.task)


def selected(cfg: DictConfig | None) -> dict[str, dict]:
    """{logger name: its settings} for a run's config."""
    node = cfg.get("logger") if cfg is not None else None
    if node is None:
        return dict(DEFAULT)
    if not OmegaConf.is_dict(node):
        raise GenlabError("logger must be chosen as a config group: logger=tensorboard, logger=wandb or "
                          "logger=[tensorboard,wandb]")
    return {str(k): (OmegaConf.to_container(v, resolve=True) if OmegaConf.is_dict(v) else {}) for k, v in node.items()}


def validate(cfg: DictConfig) -> None:
    """Unknown loggers, bad settings and missing packages: one line each, before anything is written."""
    for name, settings in selected(cfg).items():
        LOGGERS[name].check(settings)


def build(cfg: DictConfig | None) -> list[Logger]:
    return [LOGGERS[name](settings) for name, settings in selected(cfg).items()]


class Logger:
    def __init__(self, settings: dict):
        self.settings = settings

    @staticmethod
    def check(settings: dict) -> None:
        pass

    def start(self, run_dir: Path, cfg: DictConfig, purge_step: int | None) -> None:
        pass

    def scalars(self, tags: dict[str, float], step: int) -> None:
        pass

    def image(self, tag: str, array: np.ndarray, step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def final(self, params: dict, metrics: dict[str, float], step: int) -> None:
        pass

    def close(self) -> None:
        pass


@LOGGERS.register("tensorboard")
class TensorBoard(Logger):
    """TensorBoard event files in RUN/tb/ (`tensorboard --logdir outputs`)."""

    def start(self, run_dir, cfg, purge_step):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        files.prepare_folder(self.run_dir / "tb")  # never a link: TensorBoard writes inside it
        self.events = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)
        if purge_step is None and cfg is not None:  # a fresh run: the config once (a resumed run has it already)
            text = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
            self.events.add_text("config", "```\n" + text + "```", 0)

    def scalars(self, tags, step):
        for tag, value in tags.items():
            self.events.add_scalar(tag, value, step)

    def image(self, tag, array, step):
        self.events.add_image(tag, array, step, dataformats="HWC")

    def flush(self):
        self.events.flush()

    def final(self, params, metrics, step):
        """The HParams tab: the job's overrides against its final numbers (final/<name>)."""
        from torch.utils.tensorboard.summary import hparams

        if not params or not metrics:
            return
        for summary in hparams(params, metrics):
            self.events.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            self.events.add_scalar(tag, value, step)

    def close(self):
        self.events.close()


@LOGGERS.register("wandb")
class Wandb(Logger):
    """A Weights & Biases run: the config at the start, the scalars and images as they come, the final numbers
    in its summary. mode=offline (the default) needs no account and no network: RUN/wandb/offline-run-*/, which
    `wandb sync` uploads later; mode=online streams it."""

    MODES = ("offline", "online", "disabled")

    @staticmethod
    def check(settings):
        mode = settings.get("mode", "offline")
        if mode not in Wandb.MODES:
            raise GenlabError(f"logger.wandb.mode must be one of {', '.join(Wandb.MODES)}, got {mode!r}")
        for key in ("project", "entity", "group", "name", "notes"):
            if settings.get(key) is not None and not isinstance(settings[key], str):
                raise GenlabError(f"logger.wandb.{key} must be a string, got {settings[key]!r}")
        tags = settings.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise GenlabError(f"logger.wandb.tags must be a list of strings, e.g. '[gan,sweep]'; got {tags!r}")
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise GenlabError("logger=wandb needs the wandb package: pip install 'genlab[wandb]' (or pick "
                              "logger=tensorboard)") from None

    def start(self, run_dir, cfg, purge_step):
        import wandb

        run_dir = Path(run_dir).resolve()
        s = self.settings
        import os

        # wandb-core's own debug logs go to its cache folder (~/.cache/wandb): into the run folder instead,
        # unless the user chose a cache folder
        if "WANDB_CACHE_DIR" not in os.environ or os.environ.get("_GENLAB_SET_WANDB_CACHE") == "1":
            os.environ["WANDB_CACHE_DIR"] = str(run_dir / "wandb" / "cache")
            os.environ["_GENLAB_SET_WANDB_CACHE"] = "1"

        files.prepare_folder(run_dir / "wandb")  # never a link: wandb writes inside it

        sweep = sweep_overrides() is not None  # a job of a Hydra multirun: grouped by its sweep folder
        group = s.get("group") or (f"multirun/{run_dir.parent.name}" if sweep else f"{cfg.model.name}_{cfg.data.name}")
        config = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
        try:
            self.run = wandb.init(
                dir=str(run_dir), project=s.get("project") or "genlab", entity=s.get("entity"), group=group,
                name=s.get("name") or (f"{run_dir.parent.name}/{run_dir.name}" if sweep else run_dir.name),
                tags=list(s.get("tags") or []), notes=s.get("notes"), mode=s.get("mode", "offline"),
                # one wandb run per run folder: a resume into the same folder continues it
                id=self._run_id(run_dir), resume="allow",
                config=config, settings=wandb.Settings(silent=True, console="off"))
        except Exception as err:  # noqa: BLE001  (no login for mode=online, a bad entity...: one line)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise GenlabError(f"logger=wandb could not start a run ({first[:200]}); without an account or a "
                              "network use logger.wandb.mode=offline") from None
        if s.get("mode", "offline") == "offline":
            import logging

            logging.getLogger("genlab").info(f"wandb: offline run in {run_dir / 'wandb'}; upload it with "
                                             f"`wandb sync {run_dir / 'wandb'}/offline-run-*`")

    @staticmethod
    def _run_id(run_dir: Path) -> str:
        """A random id made on the run folder's first start (RUN/wandb/genlab_run_id), read back on a resume into
        the same folder: a new folder at the same path (or on another machine) is a new wandb run."""
        import secrets

        path = run_dir / "wandb" / "genlab_run_id"
        if path.is_file() and not path.is_symlink():
            text = files.read_bytes(path, 256, root=run_dir, what="wandb run id").decode("ascii", "replace").strip()
            if text.isalnum() and 8 <= len(text) <= 64:
                return text
        text = secrets.token_hex(8)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
        return text

    def scalars(self, tags, step):
        self.run.log(dict(tags), step=step)

    def image(self, tag, array, step):
        import wandb

        self.run.log({tag: wandb.Image(array)}, step=step)

    def final(self, params, metrics, step):
        for name, value in metrics.items():
            self.run.summary[name] = value

    def close(self):
        self.run.finish()
