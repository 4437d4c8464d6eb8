"""A lean Trace_ELBO: the same loss and gradients with less per-step bookkeeping."""

from __future__ import annotations

import contextlib

import torch
from pyro import poutine
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape

__all__ = ["LeanTrace_ELBO"]


class _Record(Messenger):
    """Records sample sites as ``poutine.trace`` does; replays unobserved ones from a guide.

    One messenger does the work of ``trace(replay(fn, guide_trace))`` without building
    ``Trace`` graphs; it sits below the program's own plates, so each recorded site carries
    its plate stack, scale and mask exactly as a traced one.
    """

    def __init__(self, replay: dict | None = None):
        super().__init__()
        self.sites: dict = {}
        self.replay = replay

    def _pyro_sample(self, msg) -> None:
        if self.replay is None or msg["is_observed"]:
            return
        guide_msg = self.replay.get(msg["name"])
        if guide_msg is not None:  # the same checks and effects as poutine.replay
            if guide_msg["type"] != "sample" or guide_msg["is_observed"]:
                raise RuntimeError(f"site {msg['name']} must be sampled in trace")
            msg["done"] = True
            msg["value"] = guide_msg["value"]
            msg["infer"] = guide_msg["infer"]

    def _pyro_post_sample(self, msg) -> None:
        if msg["infer"].get("_do_not_trace"):
            return
        if msg["name"] in self.sites:
            raise RuntimeError(f"Multiple sample sites named '{msg['name']}'")
        self.sites[msg["name"]] = msg.copy()


def _run(fn, args, kwargs, replay: dict | None = None) -> dict:
    with _Record(replay) as record:
        fn(*args, **kwargs)
    return record.sites


def _to_trace(sites: dict) -> Trace:
    trace = Trace()
    for name, site in sites.items():
        trace.add_node(name, **site)
    return trace


def _forked_rngs(*site_dicts: dict) -> contextlib.ExitStack:
    """Forks the CPU generator and that of every accelerator the sites' values live on (the
    observed data sits on the model's device; a full batch's plate indices may be on the CPU)."""
    devices: dict[str, set] = {}
    for sites in site_dicts:
        for site in sites.values():
            value = site.get("value")
            if torch.is_tensor(value) and value.device.type != "cpu":
                index = value.device.index
                devices.setdefault(value.device.type, set()).add(0 if index is None else index)
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))  # the CPU generator
    for kind, indices in devices.items():
        forked = [torch.device(kind, i) for i in sorted(indices)]
        stack.enter_context(torch.random.fork_rng(devices=forked, device_type=kind))
    return stack


class LeanTrace_ELBO(Trace_ELBO):
    """``Trace_ELBO`` with the same loss value and gradients, minus most per-step overhead.

    For one particle and a callable guide, the guide is run and the model replayed against
    it under a single light messenger instead of ``poutine.trace`` + ``poutine.replay``;
    each site's scaled log density is computed as ``Trace.compute_log_prob`` and
    ``compute_score_parts`` do and summed in Trace_ELBO's order. What is left out:

    - ``Trace`` graphs and ``prune_subsample_sites`` copies;
    - a ``.item()`` per site: the loss value is summed in float64 on the tensors, as
      Trace_ELBO sums Python floats, so the value is the same without a host sync;
    - NaN warning hooks on every site (the caller checks the loss, as ``inference.fit`` does);
    - repeated validation: with validation on, the model/guide match and the site shapes are
      checked by Pyro's own functions once for each structure (site names, value shapes and
      plates) the program shows, e.g. once for full batches and once for the last one;

    Guides with non-reparameterized sites, several particles and ``GuideMessenger`` guides
    take Trace_ELBO's own path.

    What it buys, measured (``benchmarks/mdn.py``'s step comparison, CPU-time medians over 320
    interleaved steps of the seed's MDN, batch 256, one thread, on the shared 2-core machine):
    a ``fit`` step costs 5.34 ms with it and 6.16 ms with ``Trace_ELBO``, 1.15x; a plain
    PyTorch step 4.65 ms. It mirrors ``Trace_ELBO`` of pyro-ppl 1.9 (its
    ``_differentiable_loss_particle`` and site bookkeeping), so pyproject pins
    ``pyro-ppl>=1.9,<1.10`` and ``tests/test_fit_speed_path.py`` checks the loss and every
    gradient bit for bit against ``Trace_ELBO`` for every registered model, also under
    ``poutine.lift``: models are the same Pyro program under every handler stack.

    Example:
        >>> loss_fn = LeanTrace_ELBO()(model, model.guide)
        >>> loss_fn(x, y).backward()
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._checked: set = set()  # structures validated so far (e.g. full and last batch)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        if (
            self.num_particles != 1
            or self.vectorize_particles
            or isinstance(poutine.unwrap(guide), Messenger)
        ):
            return super().differentiable_loss(model, guide, *args, **kwargs)
        guide_sites = _run(guide, args, kwargs)
        model_sites = _run(model, args, kwargs, replay=guide_sites)
        if is_validation_enabled():
            self._validate(model_sites, guide_sites)

        # Trace_ELBO._differentiable_loss_particle's terms, in its order
        terms: list[torch.Tensor] = []  # the summands of the ELBO's value
        surrogate = None  # what is differentiated
        for site in model_sites.values():
            if site_is_subsample(site):
                continue
            log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
            log_p_sum = scale_and_mask(log_p, site["scale"], site["mask"]).sum()
            terms.append(log_p_sum)
            surrogate = log_p_sum if surrogate is None else surrogate + log_p_sum
        for site in guide_sites.values():
            if site_is_subsample(site):
                continue
            parts = site["fn"].score_parts(site["value"], *site["args"], **site["kwargs"])
            parts = parts.scale_and_mask(site["scale"], site["mask"])
            if not is_identically_zero(parts.score_function):
                # score-function terms need Trace_ELBO's Rao-Blackwellized surrogate
                return self._traced_loss(model_sites, guide_sites)
            terms.append(-parts.log_prob.sum())
            if not is_identically_zero(parts.entropy_term):
                entropy = parts.entropy_term.sum()
                surrogate = -entropy if surrogate is None else surrogate - entropy
        if surrogate is None:  # nothing to differentiate
            return -sum(float(t) for t in terms)
        if len(terms) == 1:  # one float term: Trace_ELBO's float64 sum of it is exact
            return -surrogate
        # Trace_ELBO sums the terms as Python floats; a float64 sum on the tensors gives the
        # same value without a host read per site
        elbo = terms[0].detach().double()
        for t in terms[1:]:
            elbo = elbo + t.detach().double()
        surrogate_loss = -surrogate
        return (-elbo).to(surrogate_loss.dtype) + (surrogate_loss - surrogate_loss.detach())

    def _traced_loss(self, model_sites: dict, guide_sites: dict):
        model_trace = prune_subsample_sites(_to_trace(model_sites))
        guide_trace = prune_subsample_sites(_to_trace(guide_sites))
        model_trace.compute_log_prob()
        guide_trace.compute_score_parts()
        loss, surrogate_loss = self._differentiable_loss_particle(model_trace, guide_trace)
        surrogate_loss = 0.0 + surrogate_loss / self.num_particles
        return loss + (surrogate_loss - surrogate_loss.detach())

    def _validate(self, model_sites: dict, guide_sites: dict) -> None:
        key = tuple(
            (name, getattr(site["value"], "shape", None), site["cond_indep_stack"])
            for sites in (model_sites, guide_sites)
            for name, site in sites.items()
        )
        if key in self._checked:
            return
        # the checks recompute every site's log density: a model with dropout would draw new
        # masks there, so they run on a forked RNG and the training's random stream is the
        # same whichever steps are checked (a resumed fit checks its first batches again)
        with _forked_rngs(model_sites, guide_sites):
            self._check(model_sites, guide_sites)
        if len(self._checked) < 64:  # a model whose structure keeps changing is checked each time
            self._checked.add(key)

    def _check(self, model_sites: dict, guide_sites: dict) -> None:
        model_trace, guide_trace = _to_trace(model_sites), _to_trace(guide_sites)
        check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        model_trace.compute_log_prob()
        guide_trace.compute_score_parts()
        for trace in (model_trace, guide_trace):
            for site in trace.nodes.values():
                if site["type"] == "sample":
                    check_site_shape(site, self.max_plate_nesting)
        check_if_enumerated(guide_trace)
