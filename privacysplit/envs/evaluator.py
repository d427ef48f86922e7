"""Evaluate a plan: compress, retrain, attack, cost, score — with a cache in front.

The :class:`Evaluator` is everything the environment's terminal step does, usable on its
own (``env.unwrapped.evaluate(plan)``, the searchers, the benchmarks).  It is built
cheaply: the base network is trained (or loaded from the on-disk cache) only on the first
evaluation that misses the cache, so ``gym.make`` and non-terminal steps stay fast.

Measured metrics are cached; the reward is recomputed from them on every call, so changing
the resource metric or the thresholds never forces a re-evaluation.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch

from privacysplit._fsutil import atomic_torch_save
from privacysplit._validate import check_float, check_seed
from privacysplit.attacks import evaluate_split
from privacysplit.attacks.retraining import (
    DEFAULT_GAME,
    PROACTIVE_VERSION,
    base_schedule,
    resolve_game,
)
from privacysplit.compression import CompressionSettings, apply_plan
from privacysplit.data import Dataset
from privacysplit.data.tensors import resolve_dataset
from privacysplit.envs.cache import CacheError, EvalCache
from privacysplit.envs.executor import (
    EXECUTORS,
    WORKER_THREADS,
    Executor,
    make_executor,
    measure_safely,
)
from privacysplit.envs.reward import Reward, Thresholds
from privacysplit.envs.space import SearchSpace
from privacysplit.envs.user_base import pretrained, resolve_base
from privacysplit.fidelity import Fidelity, get_fidelity, retraining_fields
from privacysplit.models import CostModel, DeviceProfile, Network, resource_savings
from privacysplit.plan import Plan
from privacysplit.threads import torch_threads
from privacysplit.training import cache_dir, resolve_device

#: bump when evaluation code changes the numbers it produces (part of every cache key).
#: 5: the ``cpu`` preset's attacker is the patient one (a longer prior, ``shift_attack="prior"``,
#: warm restarts under the proactive threat) and the per-plan seed hashes only what retraining
#: reads (:meth:`Evaluator.seed_config`).  6: the ``cpu`` preset's attacker reads whitened
#: features where they are not noisy (``attack_input="auto"``) and attacks proactive encoders
#: on the whole split for the subset's steps (``proactive_aux="split_steps"``); every key seeds
#: retraining after the attack prior (version 5 marked the keys this moved ``seeded_after_prior``).
#: 7: the ``cpu`` attacker reads the whole training split at the full epochs under both threats
#: (``reactive_aux="split"``, ``proactive_aux="split"``) and against proactive encoders trains on
#: whenever the fine-tuned prior is short of its base score (``proactive_shift_tolerance=0``):
#: within 0.02 SSIM and 10 % MSE of the reference at every LeNet depth (README *Attack strength*)
EVAL_VERSION = 7

THREATS = ("reactive", "proactive")
PRIVACY = {"mse": "P0", "ssim": "P1", "property": "P2"}
RESOURCES = {"params": "S1", "macs": "S2", "latency": "S3"}


def weights_file_name(plan: Plan | str) -> str:
    """The file :meth:`Evaluator.measure` writes a plan's weights to under ``keep_weights``:
    named by the plan alone, so the driver finds what any worker wrote."""
    return hashlib.sha256(str(plan).encode()).hexdigest()[:32] + ".pt"


def _choice(name: str, value: str, valid) -> str:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    return value


class Evaluator:
    """Scores plans for one (base network, dataset, fidelity, threat, metrics) setting.

    Args:
        base: base network name (see :func:`privacysplit.models.list_models`), a
            ``torch.nn.Module`` of your own, or ``"file.py:factory"`` (see
            :mod:`privacysplit.envs.user_base`).
        dataset: dataset name, a loaded :class:`~privacysplit.data.Dataset`, a ``(train,
            test)`` pair of ``torch.utils.data.Dataset``, tensors ``(x_train, y_train,
            x_test, y_test)``, ``"torchvision:<Class>"`` or a ``.pt`` file (see
            :mod:`privacysplit.data.tensors`).
        data_root: folder of on-disk datasets.
        fidelity: ``smoke``/``cpu``/``paper`` or a :class:`~privacysplit.Fidelity`.
        threat: ``reactive`` or ``proactive`` (Algorithm 1).
        privacy: ``mse`` (P0), ``ssim`` (P1) or ``property`` (P2).
        resource: ``params`` (S1), ``macs`` (S2) or ``latency`` (S3).
        thresholds: Eq. 18 tolerances ``(A_m, P_m, S_m)``; ``None`` for Eq. 13.
        techniques: technique subset to search over (default: all of Table 2).
        partitions: allowed partition indices (default: all).
        settings: compression strengths.
        device: torch device for training (``"auto"`` picks CUDA when present).
        cache: SQLite path, ``None`` for the default file under the cache folder, or
            ``False``/``"off"`` for an in-process cache only.
        seed: seeds base training and, mixed with the plan, every evaluation.
        profile: device profile for latency (S3).
        feature_noise: Gaussian noise on the released features, in units of their std
            (the paper's Table 7 baseline); 0 disables.
        game: the proactive game's objective (``threat="proactive"`` only), one of
            :data:`~privacysplit.attacks.retraining.GAME_OBJECTIVES`; ``None``: ``dcor``.
        executor: where cache misses are measured: ``inprocess``, ``process`` (a local
            pool of ``workers`` processes) or ``ray`` (``address`` joins a cluster).
        workers: number of parallel workers for ``process`` and ``ray``.
        address: Ray cluster address (``None`` starts a local Ray).
        accuracy_base: a known A_base (workers get the driver's), skipping its measurement.
        keep_weights: folder where :meth:`measure` writes each measured plan's trained
            weights (``None``: none are written).
        weights_cache: the evaluation-cache file (or cache folder) beside which trained
            base networks are stored, under ``base/``; default: ``cache`` itself, so
            everything a run writes lives where ``cache`` points (workers get the driver's).
        weights: a ``state_dict`` (a file path, loaded with ``weights_only=True``, or a
            mapping) to start from instead of training the base network; a key that does
            not fit is one ``ValueError`` naming it.
    """

    def __init__(
        self,
        base: str = "lenet",
        dataset: str | Dataset = "mnist",
        *,
        data_root: str | Path | None = None,
        fidelity: str | Fidelity = "cpu",
        threat: str = "reactive",
        privacy: str = "ssim",
        resource: str = "params",
        thresholds=None,
        techniques: list[str] | None = None,
        partitions: list[int] | None = None,
        settings: CompressionSettings | None = None,
        device: str | torch.device | None = "cpu",
        cache: str | Path | bool | None = None,
        seed: int = 0,
        profile: DeviceProfile | str | Path | None = None,
        feature_noise: float = 0.0,
        game: str | None = None,
        executor: str = "inprocess",
        workers: int = 1,
        address: str | None = None,
        accuracy_base: float | None = None,
        weights=None,
        keep_weights: str | Path | None = None,
        weights_cache: str | Path | None = None,
    ) -> None:
        self._init_kwargs = {
            "base": base, "weights": weights, "dataset": dataset, "data_root": data_root, "fidelity": fidelity,
            "threat": threat, "privacy": privacy, "resource": resource, "thresholds": thresholds,
            "techniques": techniques, "partitions": partitions, "settings": settings,
            "device": device, "seed": seed, "profile": profile, "feature_noise": feature_noise, "game": game,
        }
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.executor_kind, self.workers, self.address = executor, workers, address
        self._executor: Executor | None = None
        self.threat = _choice("threat", threat, THREATS)
        self.privacy = _choice("privacy metric", privacy, PRIVACY)
        self.resource = _choice("resource metric", resource, RESOURCES)
        self.fidelity = get_fidelity(fidelity)
        self.reward_fn = Reward(Thresholds.from_any(thresholds))
        self.settings = settings or CompressionSettings()
        self.device = resolve_device(device)
        self.seed = check_seed(seed)
        self.feature_noise = check_float("feature_noise", feature_noise, minimum=0.0)
        self.game = resolve_game(game)
        if isinstance(profile, (str, Path)):
            profile = DeviceProfile.load(profile)
        self.profile = profile or DeviceProfile()
        # workers get the resolved profile: a name like "host" measured again in each worker
        # would give numbers that differ from the driver's (and from its cache key)
        self._init_kwargs["profile"] = self.profile
        self.data = resolve_dataset(dataset, data_root, privacy=self.privacy)
        if self.privacy == "ssim" and not self.data.is_image:
            raise ValueError(f"privacy 'ssim' needs images; {self.data.name} is tabular (use 'mse' or 'property')")
        self.labels = "coarse" if self.privacy == "property" else "fine"
        self.source = resolve_base(base, self.data, self.labels, weights=weights, seed=self.seed, settings=self.settings)
        self.base_name = self.source.name
        self.structure: Network = self.source.structure
        self.space = SearchSpace(self.structure.layers, techniques, partitions)
        #: costs of the uncompressed network per partition (every weight counted: see CostModel's
        #: ``nonzero``); its total is the denominator of S1-S3
        self.structure_cost = CostModel(self.structure, self.profile, nonzero=False)
        self._total_cost = self.structure_cost.total()
        if cache is False or cache == "off":
            self.cache = EvalCache(None)
        else:
            self.cache = EvalCache(cache if cache not in (None, True) else cache_dir() / "evals.sqlite")
        self._base: tuple[Network, float] | None = None
        self._known_accuracy_base = accuracy_base
        self.weights_cache = Path(weights_cache) if weights_cache is not None else self.cache.path
        self._config: dict | None = None
        self.keep_weights = None if keep_weights is None else Path(keep_weights)
        #: called with each plan's text as its measurement finishes (a progress bar's tick)
        self.on_measured = None

    # -- configuration -----------------------------------------------------------------
    def config(self) -> dict:
        """Everything that changes measured numbers; hashed into every cache key.

        The base network, the dataset *and its contents* (a hash of the loaded tensors, so
        replacing files under ``data_root`` is a miss), fidelity, threat, privacy metric,
        compression settings, seed, feature noise, the device profile (it sets S3), the
        torch device type (CUDA kernels do not reproduce CPU ones bit for bit) and the
        evaluation code version.
        """
        if self._config is None:
            self._config = {
                "base": self.base_name,
                "dataset": self.data.name,
                "dataset_fingerprint": self.data.fingerprint(),
                "fidelity": self.fidelity.to_dict(),
                "threat": self.threat,
                "privacy": self.privacy,
                "settings": self.settings.key(),
                "seed": self.seed,
                "feature_noise": self.feature_noise,
                "profile": dataclasses.asdict(self.profile),
                "device_type": self.device.type,
                "eval_version": EVAL_VERSION,
            }
            if self.threat == "proactive":  # the proactive game's own version; reactive keys unchanged
                self._config.update(self._game_key())
        return self._config

    def _game_key(self) -> dict:
        """What a proactive plan's numbers depend on beyond the reactive key: the game's
        version and, for a game other than the default, its name (so the default game's
        keys, and every table measured with it, stay what they were)."""
        key: dict = {"proactive_version": PROACTIVE_VERSION}
        if self.game != DEFAULT_GAME:
            key["game"] = self.game
        return key

    def key(self, plan: Plan) -> str:
        blob = json.dumps([self.config(), str(plan)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def base(self) -> tuple[Network, float]:
        """The trained base network and A_base (trained once, cached on disk).

        A_base is the accuracy of the *unsplit, uncompressed* network (the plan
        ``"<last layer> | none"``) put through the same retraining as every plan of this
        setting: the same training images and validation images, the same optimiser, the
        same seed derivation, and as many encoder+cloud epochs as a plan trains under the
        chosen threat (N_ec reactive; proactive: the game's schedule at lambda 0,
        :func:`~privacysplit.attacks.retraining.base_schedule`).  Under ``threat="reactive"``
        the full-network uncompressed plan therefore scores exactly A_base (R_A = 1).
        Measuring it right after base training instead would compare a plan that had more
        epochs with a base that had not: at ``cpu`` fidelity AlexNet gained 13 points that
        way and every plan looked better than the base.
        """
        if self._base is None:
            net, _ = pretrained(
                self.source, self.data, labels=self.labels, fidelity=self.fidelity,
                seed=self.seed, device=self.device, cache=self.weights_cache,
            )
            self._base = (net, self._accuracy_base(net))
        return self._base

    def full_plan(self) -> Plan:
        """The unsplit, uncompressed plan (every layer on the device, nothing compressed)."""
        return Plan(len(self.structure) - 1)

    def seed_config(self) -> dict:
        """What a plan's retrained network depends on: :meth:`config` less what only the
        measurement reads (the device profile, the privacy metric beyond the task labels it
        sets, the attacker's fidelity fields, the torch device type, the code version).

        The per-plan seed hashes this, not the cache key, so settings that differ only in how
        a plan is measured retrain it into the same network and compare on one footing
        (version 5; see :func:`privacysplit.fidelity.retraining_fields`).
        """
        config = self.config()
        seed_config = {k: config[k] for k in ("base", "dataset", "dataset_fingerprint", "threat", "settings",
                                             "seed", "feature_noise")}
        seed_config["fidelity"] = retraining_fields(self.fidelity, self.threat)
        seed_config["labels"] = self.labels
        if self.threat == "proactive":  # the game reads the privacy metric and has its own version
            seed_config["privacy"] = self.privacy
            seed_config.update(self._game_key())
        return seed_config

    def plan_seed(self, plan: Plan | str) -> int:
        """The per-plan seed (initialisation, batch order, noise): a hash of the plan and
        :meth:`seed_config`."""
        blob = json.dumps([self.seed_config(), str(plan)], sort_keys=True)
        return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16)

    def _accuracy_base(self, net: Network) -> float:
        if self._known_accuracy_base is not None:
            return self._known_accuracy_base
        key = "accuracy_base:" + hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()
        cached = self.cache.get(key)
        if cached is not None:
            return float(cached["accuracy_base"])
        fid = self.fidelity
        if self.threat == "proactive":  # as many epochs, in the same batches, as a proactive plan
            fid = base_schedule(fid, self.game)
        plan = self.full_plan()
        encoder, cloud = apply_plan(net, plan, self.settings)
        result = evaluate_split(
            encoder, cloud, self.data, fidelity=fid, threat="reactive", privacy=self.privacy,
            device=self.device, seed=self.plan_seed(plan), data_seed=self.seed, attack=False,
        )
        acc = float(result["accuracy"])
        self.cache.put(key, "base", self.config(), {"accuracy_base": acc})
        return acc

    # -- evaluation --------------------------------------------------------------------
    def measure(self, plan: Plan) -> dict:
        """Compress, cost, retrain and attack ``plan`` (no cache); the raw metrics.

        With ``keep_weights`` (a folder) the trained encoder's and cloud's state_dicts are
        also written there (:func:`weights_file_name`), so a search can keep its best plan's
        weights and export it without retraining (``privacysplit.search_run``).
        """
        encoder, cloud, metrics = self.train_plan(plan)
        if self.keep_weights is not None:
            atomic_torch_save({"plan": str(plan), "encoder": encoder.state_dict(), "cloud": cloud.state_dict()},
                              self.keep_weights / weights_file_name(plan))
        return metrics

    def train_plan(self, plan: Plan | str, return_attacker: bool = False) -> tuple[Network, Network, dict]:
        """Build, retrain and attack ``plan``; the trained encoder and cloud and the metrics.

        The same seed (:meth:`plan_seed`) as :meth:`measure`, so an exported model
        is the one whose numbers the search saw.
        """
        plan = self.space.validate(plan)
        t0 = time.perf_counter()
        base, acc_base = self.base()
        fid = self.fidelity
        key_seed = self.plan_seed(plan)
        torch.manual_seed(key_seed)
        calib_x = self.data.train.take(min(256, len(self.data.train)), self.seed).x
        calib = self.data.normalize(calib_x).to(self.device)
        encoder, cloud = apply_plan(base, plan, self.settings, calib=calib, distill_steps=fid.distill_steps)
        metrics = self._costs(encoder)
        result = evaluate_split(
            encoder, cloud, self.data, fidelity=fid, threat=self.threat, privacy=self.privacy,
            device=self.device, seed=key_seed, data_seed=self.seed, feature_noise=self.feature_noise,
            return_attacker=return_attacker, game=self.game,
            # the attacker starts from a decoder trained once on the base network's features
            # at this partition (cached beside the base weights): see attacks/prior.py
            prior_encoder=base.sub(0, plan.partition + 1), prior_cache=self.weights_cache,
        )
        if return_attacker:
            metrics["attacker_model"] = result.get("attacker_model")
        metrics.update({k: v for k, v in result.items() if isinstance(v, (int, float, str)) or v is None})
        metrics["accuracy_base"] = acc_base
        metrics["eval_seconds"] = time.perf_counter() - t0
        return encoder, cloud, metrics

    def _costs(self, encoder: Network) -> dict:
        cost = CostModel(encoder, self.profile, full_length=len(self.structure)).encoder_cost(len(encoder) - 1)
        total = self._total_cost
        return {
            "params": cost.params, "macs": cost.macs, "feature_bytes": cost.feature_bytes,
            "latency_s": cost.latency_s, "params_total": total.params, "macs_total": total.macs,
            "latency_total_s": total.latency_s, **resource_savings(cost, total),
        }

    def worker_kwargs(self) -> dict:
        """Arguments that rebuild this evaluator in a worker (no cache: the driver writes)."""
        return {**self._init_kwargs, "cache": False, "accuracy_base": self.base()[1], "keep_weights": self.keep_weights,
                "weights_cache": self.weights_cache}

    def executor(self) -> Executor:
        """The executor, started on first use (after the base network is trained here, so
        workers load it from the disk cache instead of training it in parallel)."""
        if self._executor is None:
            if self.executor_kind != "inprocess":
                # on the workers' thread count: the base weights (a cached file, not keyed on
                # threads) and A_base are then what a worker, or a one-thread in-process run,
                # computes.  Measured: the quick start's base trained on two threads here moved
                # its best plan's P from 0.6898 to 0.6901.
                with torch_threads(WORKER_THREADS):
                    self.base()
            self._executor = make_executor(self.executor_kind, self, self.workers, self.address)
        return self._executor

    def close(self) -> None:
        """Stop worker processes or actors (the evaluator stays usable in-process)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def evaluate(self, plan: Plan | str) -> dict:
        """Metrics and reward of ``plan``: the environment's terminal ``info`` plus ``reward``.

        Never raises for a failing or diverging evaluation: the reward is then 0 and the
        reason is in ``info["error"]``.  Invalid plans raise ``ValueError``.
        """
        return self.evaluate_many([plan])[0]

    def evaluate_many(self, plans: list[Plan | str]) -> list[dict]:
        """Score several plans; cache misses run together on the executor.

        Plans are validated first (an invalid one raises before any work), a plan repeated
        within the batch is measured once, and results come back in input order.  Each
        result is stored in the cache the moment it finishes, so a kill part-way through a
        batch loses only the evaluations still running.  Failed measurements are reported
        (reward 0, ``error``) and not cached, so a transient failure is retried next time.

        Processes sharing a cache file do not measure the same plan twice: a miss is first
        marked in progress (:meth:`EvalCache.claim`); a plan another live process is
        measuring is waited for and then read from the cache (``cache_hit`` is true), and a
        mark left by a dead process is taken over.
        """
        parsed = [self.space.validate(p) for p in plans]
        t0 = time.perf_counter()
        found: dict[str, tuple[dict, bool]] = {}
        pending: dict[str, Plan] = {}
        for plan in parsed:
            text = str(plan)
            if text in found or text in pending:
                continue
            cached = self.cache.get(self.key(plan))
            if cached is not None:
                found[text] = (cached, True)
            else:
                pending[text] = plan
        delay = 0.02
        while pending:
            mine: list[Plan] = []
            for text, plan in list(pending.items()):
                key = self.key(plan)
                state = self.cache.claim(key)
                if state == "mine":
                    mine.append(plan)
                    del pending[text]
                elif state == "done":
                    cached = self.cache.get(key)
                    if cached is not None:  # else a damaged row: claim again next round
                        found[text] = (cached, True)
                        del pending[text]
            if mine:
                self._measure_and_store(mine, found)
                delay = 0.02
            elif pending:  # every remaining plan is being measured by another process
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        lookup = time.perf_counter() - t0
        out, seen = [], set()
        for plan in parsed:
            metrics, hit = found[str(plan)]
            out.append(self._info(plan, metrics, hit or str(plan) in seen, lookup))
            seen.add(str(plan))
        return out

    def _measure_and_store(self, plans: list[Plan], found: dict[str, tuple[dict, bool]]) -> None:
        """Measure ``plans`` (claimed by this process), storing and releasing each as it ends."""
        texts = [str(p) for p in plans]
        if self.executor_kind == "inprocess":
            results = ((i, measure_safely(self, t)) for i, t in enumerate(texts))
        else:
            results = self.executor().measure_iter(texts)
        try:
            for i, metrics in results:
                key = self.key(plans[i])
                if "error" not in metrics or "accuracy" in metrics:
                    self.cache.put(key, texts[i], self.config(), metrics)
                self.cache.release(key)
                found[texts[i]] = (metrics, False)
                if self.on_measured is not None:
                    self.on_measured(texts[i])
        finally:  # interrupted: give up the marks of plans that did not finish
            for plan, text in zip(plans, texts, strict=True):
                if text not in found:
                    with contextlib.suppress(CacheError):  # never hide the interruption itself
                        self.cache.release(self.key(plan))

    def _info(self, plan: Plan, metrics: dict, hit: bool, seconds: float) -> dict:
        info = dict(metrics)
        info.update(
            plan=str(plan), cache_hit=hit, eval_seconds=seconds if hit else metrics.get("eval_seconds", seconds),
            fidelity=self.fidelity.name, threat=self.threat, privacy_metric=self.privacy,
            resource_metric=self.resource, reward_name=self.reward_fn.name,
        )
        if "accuracy" not in metrics or "privacy_loss" not in metrics:
            info.update(reward=0.0, R_A=0.0, R_P=0.0, R_S=0.0)
            info.setdefault("resource", float(metrics.get(RESOURCES[self.resource], 0.0)))
            return info
        info["resource"] = float(metrics[RESOURCES[self.resource]])
        info.update(self.reward_fn.factors(metrics["accuracy"], metrics["accuracy_base"], metrics["privacy_loss"], info["resource"]))
        if metrics.get("error"):
            info["reward"] = 0.0
        return info

    def copy_base(self) -> Network:
        """A private copy of the trained base network (for export and inspection)."""
        return copy.deepcopy(self.base()[0])
