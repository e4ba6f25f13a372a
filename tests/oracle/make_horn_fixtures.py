"""Write the HORN parity fixture with the reference brainmass 0.1.1 (JAX), float64, CPU.

Runs in an environment with the oracle only (no torch, no dyna):

    pip install brainmass==0.1.1 brainstate==0.5.4 braintools==0.3.0 brainunit==0.5.2 \
        jax==0.10.2 jaxlib==0.10.2
    python tests/oracle/make_horn_fixtures.py

It writes ``tests/oracle/fixtures/horn.npz`` (numpy ``savez_compressed``), read by
``test_horn_parity.py``. Weights are drawn from numpy generators with fixed seeds and stored
with the results, in PyTorch's (out, in) layout; inputs are stored too. Keys are
``<case>/<field>``.

Cases (h = dt / 1 ms; every loss is ``sum(x_seq * probe)`` with the deterministic probe of
:func:`probe`, or ``sum(logits * probe)`` for the network):

- ``plain``: one layer, n = 32, B = 4, T = 784, h = 1, per-unit alpha, omega, gamma, v (all
  trainable), no delays.
- ``delayed``: the same with integer delays 2..40 steps (no recurrent bias), batched with
  ``brainstate.nn.Map``.
- ``fine``: one layer, n = 5, B = 2, T = 60, h = 0.1, delays given in time as
  (D - 0.5) * 0.1 ms (so brainmass's ceil gives D steps, D in 0..6).
- ``network``: ``HORNSeqNetwork(1, [8, 5], 3)``, B = 3, T = 120, h = 1, one trainable omega
  shared by both layers, gamma of shape (1,), a readout probe ``probe`` (B, 3).

Fields: ``input`` (T, B, n_input); weights ``w_ih``, ``b_ih``, ``w_hh``, ``b_hh`` (network:
``layer<l>/...`` and ``w_ho``, ``b_ho``); dynamics ``alpha``, ``omega``, ``gamma``, ``v``;
``delay`` (steps); ``dt``; results ``x_seq`` (T, B, n) (long cases: rows ``x_first``,
``x_mid`` (t = T/2), ``x_last`` and ``y_last``), network ``logits``; gradients
``grad/<name>`` in our layout.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# The oracle (JAX) is imported in main(): pytest imports this file for its doctests, and the
# project's environment has no JAX.
jax = brainmass = brainstate = u = jnp = None

OUT = Path(__file__).resolve().parent / "fixtures" / "horn.npz"
OMEGA_BASE = 2 * math.pi / 28


def probe(steps: int, batch: int, n: int) -> np.ndarray:
    """Deterministic loss weights (T, B, n): cos(0.05 t + 0.3 i + 0.7 b) / T."""
    t = np.arange(1, steps + 1)[:, None, None]
    b = np.arange(batch)[None, :, None]
    i = np.arange(n)[None, None, :]
    return np.cos(0.05 * t + 0.3 * i + 0.7 * b) / steps


def set_dt(dt: float) -> None:
    # h = dt / 1 ms; a plain float would give junk units.
    brainstate.environ.set(dt=dt * u.ms, precision=64)


def gradient_entries(prefix: str, key: tuple, value) -> dict[str, np.ndarray]:
    """Gradients in our layout: Linear weights transposed to (out, in), keys by our names."""
    names = {
        "i2h": "ih",
        "linear": "hh",
        "weights": "hh",
        "h2o": "ho",
    }
    if key[-2:] == ("weights", "val"):  # delayed coupling: already (out, in), no bias
        return {f"{prefix}grad/w_hh": np.asarray(value)}
    if isinstance(value, dict):
        suffix = names[key[-2]]
        return {
            f"{prefix}grad/w_{suffix}": np.asarray(value["weight"]).T,
            f"{prefix}grad/b_{suffix}": np.asarray(value["bias"]),
        }
    return {f"{prefix}grad/{key[-2]}": np.asarray(value)}  # (..., 'omega', 'val')


def recording(layer):
    """A module whose call returns the layer's recorded x and y (Map passes no keywords)."""

    class Recording(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def update(self, inputs):
            states, _ = self.layer.update(inputs, record_state=True)
            return states["x"], states["y"]

    return Recording()


def layer_case(
    rng: np.random.Generator,
    n: int,
    batch: int,
    steps: int,
    dt: float,
    delay: np.ndarray | None,
    full: bool,
) -> dict[str, np.ndarray]:
    """One layer with per-unit trainable dynamics; ``delay`` in steps (None: no delays)."""
    set_dt(dt)
    record = {
        "w_ih": rng.normal(0, math.sqrt(2), (n, 1)),
        "b_ih": rng.normal(0, 0.1, n),
        "w_hh": rng.normal(0, math.sqrt(2 / n), (n, n)),
        "alpha": rng.uniform(0.02, 0.08, n),
        "omega": rng.uniform(0.5 * OMEGA_BASE, 2 * OMEGA_BASE, n),
        "gamma": rng.uniform(0.005, 0.02, n),
        "v": rng.normal(0, 0.1, n),
        "dt": np.array(dt),
    }
    if delay is None:
        record["b_hh"] = rng.normal(0, 0.1, n)
        delay_time = None
    else:
        record["delay"] = delay
        # Times just under D steps: brainmass's ceil(delay / dt) gives D.
        delay_time = jnp.asarray(np.maximum(delay - 0.5, 0.0) * dt) * u.ms
    t = np.arange(1, steps + 1)[:, None, None]
    lane = np.arange(batch)[None, :, None]
    record["input"] = 0.5 + 0.5 * np.sin(0.37 * t + lane) * np.cos(0.011 * t * (lane + 1))
    dynamics = {
        name: brainstate.nn.Param(jnp.asarray(record[name]))
        for name in ("alpha", "omega", "gamma", "v")
    }
    layer = brainmass.HORNSeqLayer(1, n, **dynamics, delay=delay_time)
    # Map gives every lane its own states and delay buffer (plain batching of the delayed
    # path fails in brainmass 0.1.1); the weights stay shared.
    lanes = brainstate.nn.Map(recording(layer), init_map_size=batch)
    lanes.init_all_states()
    layer.i2h.weight.value = {
        "weight": jnp.asarray(record["w_ih"].T),
        "bias": jnp.asarray(record["b_ih"]),
    }
    if delay is None:
        layer.h2h.linear.weight.value = {
            "weight": jnp.asarray(record["w_hh"].T),
            "bias": jnp.asarray(record["b_hh"]),
        }
    else:
        layer.h2h.weights.val.value = jnp.asarray(record["w_hh"])
    weights = jnp.asarray(probe(steps, batch, n))
    batch_major = jnp.asarray(np.transpose(record["input"], (1, 0, 2)))

    def loss_fn():
        lanes.init_all_states()
        x, y = lanes(batch_major)
        x = jnp.transpose(x, (1, 0, 2))
        y = jnp.transpose(y, (1, 0, 2))
        return jnp.sum(x * weights), (x, y)

    params = layer.states(brainstate.ParamState)
    grads, loss, (x, y) = brainstate.transform.grad(
        loss_fn, params, has_aux=True, return_value=True
    )()
    x, y = np.asarray(x), np.asarray(y)
    if full:
        record["x_seq"] = x
        record["y_seq"] = y
    else:
        record["x_first"], record["x_mid"], record["x_last"] = x[0], x[steps // 2 - 1], x[-1]
        record["y_last"] = y[-1]
    record["loss"] = np.asarray(loss)
    for key, value in grads.items():
        record.update(gradient_entries("", key, value))
    return record


def network_case(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Two layers (8, 5), readout of 3, a trainable omega shared by both layers."""
    set_dt(1.0)
    sizes, batch, steps = [8, 5], 3, 120
    record = {"omega": np.array(0.25), "gamma": rng.uniform(0.005, 0.02, 1), "dt": np.array(1.0)}
    record["alpha"] = np.array(0.1)
    omega = brainstate.nn.Param(jnp.asarray(record["omega"]))
    net = brainmass.HORNSeqNetwork(
        1, sizes, 3, alpha=0.1, omega=omega, gamma=jnp.asarray(record["gamma"])
    )
    lanes = brainstate.nn.Map(net, init_map_size=batch)
    lanes.init_all_states()
    fan_in = 1
    for index, size in enumerate(sizes):
        layer = net.layers[index]
        prefix = f"layer{index}/"
        w_ih = rng.normal(0, math.sqrt(2 / fan_in), (size, fan_in))
        b_ih = rng.normal(0, 0.1, size)
        w_hh = rng.normal(0, math.sqrt(2 / size), (size, size))
        b_hh = rng.normal(0, 0.1, size)
        record.update({prefix + "w_ih": w_ih, prefix + "b_ih": b_ih})
        record.update({prefix + "w_hh": w_hh, prefix + "b_hh": b_hh})
        layer.i2h.weight.value = {"weight": jnp.asarray(w_ih.T), "bias": jnp.asarray(b_ih)}
        layer.h2h.linear.weight.value = {"weight": jnp.asarray(w_hh.T), "bias": jnp.asarray(b_hh)}
        fan_in = size
    record["w_ho"] = rng.normal(0, math.sqrt(2 / fan_in), (3, fan_in))
    record["b_ho"] = rng.normal(0, 0.1, 3)
    net.h2o.weight.value = {
        "weight": jnp.asarray(record["w_ho"].T),
        "bias": jnp.asarray(record["b_ho"]),
    }
    t = np.arange(1, steps + 1)[:, None, None]
    lane = np.arange(batch)[None, :, None]
    record["input"] = np.sin(0.21 * t * (lane + 1)) + 0.1 * lane
    weights = jnp.asarray(np.array([[1.0, -0.5, 0.25], [0.3, 0.2, -1.0], [-0.7, 0.4, 0.6]]))
    batch_major = jnp.asarray(np.transpose(record["input"], (1, 0, 2)))

    def loss_fn():
        lanes.init_all_states()
        logits = lanes(batch_major)
        return jnp.sum(logits * weights), logits

    params = net.states(brainstate.ParamState)
    grads, loss, logits = brainstate.transform.grad(
        loss_fn, params, has_aux=True, return_value=True
    )()
    record["logits"] = np.asarray(logits)
    record["probe"] = np.asarray(weights)
    record["loss"] = np.asarray(loss)
    for key, value in grads.items():
        prefix = f"layer{key[1]}/" if key[0] == "layers" and key[-2] != "omega" else ""
        record.update(gradient_entries(prefix, key, value))
    return record


def main() -> None:
    global jax, brainmass, brainstate, u, jnp
    import jax

    jax.config.update("jax_enable_x64", True)
    import brainmass
    import brainstate
    import brainunit as u
    import jax.numpy as jnp

    cases = {
        "plain": layer_case(np.random.default_rng(1), 32, 4, 784, 1.0, None, full=False),
        "delayed": layer_case(
            np.random.default_rng(2),
            32,
            4,
            784,
            1.0,
            np.random.default_rng(3).integers(2, 41, (32, 32)),
            full=False,
        ),
        "fine": layer_case(
            np.random.default_rng(4),
            5,
            2,
            60,
            0.1,
            np.random.default_rng(5).integers(0, 7, (5, 5)),
            full=True,
        ),
        "network": network_case(np.random.default_rng(6)),
    }
    arrays = {
        f"{case}/{field}": np.asarray(value, dtype=np.int64 if field == "delay" else np.float64)
        for case, record in cases.items()
        for field, value in record.items()
    }
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
