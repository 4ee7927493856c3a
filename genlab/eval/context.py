"""The evaluation Context: the sources a metric reads (samples, real splits, whole images, pairs, a second dataset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from genlab.core import tiles
from genlab.core.classifier import domain_classifier
from genlab.core.errors import GenlabError
from genlab.core.metrics import MetricUnavailable
from genlab.core.progress import bar
from genlab.core.registry import DATASETS
from genlab.data import build_data
from genlab.eval.places import data_config, parse_data_settings, run_data_config
from genlab.models.capabilities import Samples
from genlab.train.runs import generate

if TYPE_CHECKING:
    from genlab.train.runs import Run


@dataclass
class Context:
    run: Run
    n: int
    seed: int
    device: torch.device
    log: callable = print
    ood_name: str | None = None  # --ood-data: a second dataset, for out-of-distribution scores
    anomaly: bool = False  # --anomaly: the test split's classes outside data.normal_classes are the anomalies
    data_settings: list = field(default_factory=list)  # --data: data.KEY=VALUE, where the run's dataset is
    figures: dict = field(default_factory=dict)  # name -> PNG bytes a metric drew; `genlab eval` writes RUN/eval/
    _data: object = None
    _ood: object = None
    _fake: tuple | None = None
    _cond: tuple | None = None
    _classifier: tuple | None = None
    _real: dict = field(default_factory=dict)
    _data_config: object = None

    @property
    def data(self):
        if self._data is None:
            self._data = self.run_data(limit=None)  # evaluate against the whole split, whatever the run trained on
        return self._data

    @property
    def data_config(self):
        """The run's data.* as it trained (size, channels, classes, ...), with every key that names a place on disk
        taken from genlab's own default for that dataset or from --data, never from the checkpoint, and with
        nothing that writes (no download, no cache): a checkpoint is data and decides no read or write."""
        if self._data_config is None:
            self._data_config = run_data_config(self.run.cfg, self.data_settings)
        return self._data_config

    def run_data(self, **changes):
        """The run's dataset with some data.* keys changed (limit=None; anomaly: normal_classes=None); one line
        saying why where it is not here."""

        cfg = self.run.cfg
        data_cfg = self.data_config.copy()
        for key, value in changes.items():
            data_cfg[key] = value
        try:
            DATASETS[cfg.data.name].locate(data_cfg)
        except GenlabError as err:
            raise MetricUnavailable(f"the run's dataset is not here ({err})") from None
        # the run's own batch size: it fitted the training split then, and limit=None only adds images
        return build_data(data_cfg, cfg.train.batch_size, cfg.train.seed, self.device)

    def real(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        key = (split, limit)
        if key not in self._real:
            source = self.data.test if split == "test" else self.data.train
            if source is None or source.n_images == 0:
                raise MetricUnavailable(f"{self.data.spec.name} has no {split} split")
            parts = list(source.ordered(limit=limit, batch_size=500))
            self._real[key] = (torch.cat([b["image"].cpu() for b in parts]), torch.cat([b["label"].cpu() for b in parts]))
        return self._real[key]

    # ---- evaluation sources beyond samples and real images ------------------------------------------------
    def whole(self, limit: int | None = None):
        """Whole images of any size, one at a time, from the held-out split: (name, Batch of one example).
        Only data whose source keeps whole images offers them (super-resolution test sets)."""
        source = self.data.evaluation
        if not hasattr(source, "whole"):
            raise MetricUnavailable(f"{self.data.spec.name} ({self.data.spec.kind}) keeps no whole images")
        return source.whole(limit)

    def pairs(self, limit: int | None = None, source=None):
        """A translation model's (input, output, target) on the held-out split (or on `source`, a batch source of
        the run's kind), on the CPU: whole images one at a time where the data keeps them (any size; through the
        generator in tiles, eval.tile and eval.tile_overlap, where the model states its receptive radius), else
        its batches in file order. `model.translates` names the input and the target tensors of a batch, e.g.
        ("a", "b") or ("lr", "hr")."""

        model = self.run.model
        if not getattr(model, "translates", None):
            raise MetricUnavailable(f"{self.run.cfg.model.name} does not translate an input into an output")
        if self.run.spec.kind == "unpaired":
            raise MetricUnavailable(f"{self.run.spec.name} is unpaired: its inputs have no targets to compare with")
        inputs, targets = model.translates
        source = source if source is not None else self.data.evaluation
        tile, overlap = tiles.settings(self.run.cfg)
        batches = (b for _, b in source.whole(limit)) if hasattr(source, "whole") else \
            source.ordered(limit=limit, batch_size=50)
        for batch in batches:
            x, y = batch[inputs], batch[targets]
            # the contexts close before the yield: a consumer that stops early leaves nothing switched
            with torch.no_grad(), model.evaluating(), torch.random.fork_rng(devices=[]):
                out = tiles.translate(model, x, tile=tile, overlap=overlap).float().cpu()
            yield x.float().cpu(), out, y.float().cpu()

    @property
    def ood(self):
        """The second dataset (`--ood-data "NAME [data.KEY=VALUE ...]"`), built at the run's image size and channels;
        one line when it is missing or its examples have another shape than the run's."""
        if self.ood_name is None:
            raise MetricUnavailable("no second dataset: pass --ood-data NAME (a data option, `genlab list data`)")
        if self._ood is None:
            from omegaconf.errors import OmegaConfBaseException

            words = parse_data_settings(self.ood_name, "--ood-data", named=True)
            name, settings = words[0], words[1:]
            spec = self.run.spec
            data_cfg = data_config(name, settings, "--ood-data")
            fit = (("size", spec.size), ("channels", spec.channels)) if spec.kind == "images" else ()
            for key, value in (*fit, ("limit", None)):
                if key in data_cfg and not any(s.startswith(f"data.{key}=") for s in settings):
                    data_cfg[key] = value
            try:
                DATASETS[data_cfg.name].locate(data_cfg)
                data = build_data(data_cfg, self.run.cfg.train.batch_size, self.seed, self.device)
            except OmegaConfBaseException as err:
                key = getattr(err, "full_key", None) or str(err).splitlines()[0]
                raise GenlabError(f"--ood-data {name} needs {key}: pass it, e.g. --ood-data '{name} {key}=VALUE'") \
                    from None
            except GenlabError as err:
                raise GenlabError(f"--ood-data {name}: {err}") from None

            def shapes(s):
                return {"image": [s.channels, s.size, s.size]} if s.kind == "images" else s.shapes

            if data.spec.kind != spec.kind or shapes(data.spec) != shapes(spec):
                raise GenlabError(f"--ood-data {name} gives {data.spec.kind} shaped {shapes(data.spec)}, the run "
                                  f"trained on {spec.kind} shaped {shapes(spec)}: pick data of the same kind and shape")
            self._ood = data
        return self._ood

    @property
    def fake(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n samples with the model's own label choice (a conditional model cycles through its classes)."""
        if self._fake is None:
            try:
                parts = []
                with self.progress(f"drawing {self.n} samples", self.n) as advance:
                    for x, y in generate(self.run.model, self.n, self.seed, None):
                        parts.append((x, y))
                        advance(len(x))
            except GenlabError as err:
                raise MetricUnavailable(str(err)) from None
            labels = None if parts[0][1] is None else torch.cat([y for _, y in parts])
            self._fake = (torch.cat([x for x, _ in parts]), labels)
        return self._fake

    @property
    def classifier(self):
        if self._classifier is None:
            self._classifier = domain_classifier(self.data, self.data_config, self.device, self.log)
        return self._classifier

    @property
    def conditional_on_classes(self) -> bool:
        """Samples asked for class k should look like class k (not InfoGAN, whose code is unsupervised)."""
        return bool(getattr(self.run.model, "n_classes", 0)) and self.run.model.label_values == self.data.spec.n_classes

    @staticmethod
    def progress(label: str, total: int | None = None):
        """A progress bar for one wait of a metric (genlab/core/progress.py: drawn on a terminal only)."""

        return bar(label, total)

    def protocol(self, of_samples: bool = True, **extra) -> dict:
        """What a number of generated samples was measured under; with the sampler and its settings where the
        model's sampler has them (a diffusion model's name, steps, eta). of_samples=False: a number of real images
        only (a floor), which no sampler made."""
        describe = getattr(self.run.model, "sampler", None) if isinstance(self.run.model, Samples) else None
        sampler = describe() if of_samples and callable(describe) else {}
        return {"n_generated": self.n, "seed": self.seed, "image_size": self.run.spec.size,
                "channels": self.run.spec.channels, **({"sampler": sampler} if sampler else {}), **extra}

