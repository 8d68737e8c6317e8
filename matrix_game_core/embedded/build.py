"""Ship a training run as the embedded default model, measured: export -> install -> evaluate on
held-out maps -> ``MODEL_CARD.md``.

    python -m matrix_game_core.embedded.build --run RUN --data REC --heldout HELDOUT \\
        [--steps 1000,750,500,250] [--guidance 2] [--pitch-guidance 6] [--keyboard-guidance 1] [--guidance-rescale 0.7]
        [--guidance-hold 0.5] [--clips 8] [--rollout-seconds 10]
    python -m matrix_game_core.embedded.build --reevaluate --heldout HELDOUT [sampler flags] [--clips 8]

* ``RUN``: a ``python -m matrix_game_core.train`` run folder (preset ``embedded``); an unfinished
  dit stage is exported from its newest checkpoint's EMA weights.
* ``REC``: the training recording (its manifest gives the data figures of the card).
* ``HELDOUT``: a recording of maps the training never saw (``--maps MAP02,MAP15,MAP27``).
* ``--reevaluate``: no run folder: the model installed in ``--dest`` keeps its weights, takes the
  sampler flags given (``--steps``, the guidance flags) into its ``config.json``, and is evaluated
  again; the card's data and training figures come from the ``metrics.json`` beside it (written by
  the build that installed it).

Metrics (all on ``HELDOUT``, with the project's evaluator): :mod:`.evaluation` (next-block PSNR
beside the copy-last-frame baseline, action following, held commands, a free-running rollout, speed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

from ..errors import MatrixGameError
from . import CARD_FILE, ROOT, install_from_export, load
from .card import write_card
from .evaluation import evaluate_embedded, measure_speed


def _read_log(path: str) -> List[Dict]:
    if not os.path.isfile(path):
        return []
    with open(path, "r", encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def _decoder_log(run: str, upto=None):
    """``RUN/decoder/log.jsonl`` up to step ``upto`` (None: the step ``RUN/decoder/vae.json`` says the file
    holds; the log may have run on past it). Returns ``(rows, val rows, last training row, final text)``."""
    if upto is None:
        upto = float("inf")
        side = os.path.join(run, "decoder", "vae.json")
        if os.path.isfile(side):
            with open(side, "r", encoding="utf-8") as f:
                upto = json.load(f).get("step") or upto
    log = [r for r in _read_log(os.path.join(run, "decoder", "log.jsonl")) if r.get("step", 0) <= upto]
    val = [r for r in log if r.get("stage") == "decoder_val"]
    last = next((r for r in reversed(log) if r.get("stage") == "decoder"), {})
    final = (f"loss {last.get('loss', float('nan')):.4f}, PSNR {last.get('psnr', float('nan')):.2f} dB "
             f"(training clips)")
    return log, val, last, final


def install_run(run: str, data: str, dest: str = ROOT, steps: Optional[Sequence[int]] = None,
                guidance: Optional[float] = None, pitch_guidance: Optional[float] = None,
                keyboard_guidance: Optional[float] = None, guidance_rescale: Optional[float] = None,
                guidance_hold: Optional[float] = None, model: str = "dit", student_weight: float = 1.0):
    """Export ``run`` and install it into ``dest`` with the sampler settings given (no evaluation);
    ``model`` ``"student"`` installs the distilled student instead of the DiT (``student_weight`` < 1:
    interpolated with its teacher, :func:`~matrix_game_core.embedded.install_from_export`).
    Returns ``(train config, installed DiT config.json dict, file sizes)``."""
    from ..data.shards import read_manifest
    from ..train.__main__ import load_run_config, run_stages

    cfg = load_run_config(run, "embedded", [])
    run_stages(["export"], data, run, cfg, "cpu", echo=True)
    sizes = install_from_export(os.path.join(run, "export"), dest, fps=float(read_manifest(data)["fps"]),
                                denoising_step_list=steps, model=model, student_weight=student_weight)
    cj = set_sampler(dest, None, guidance, pitch_guidance, keyboard_guidance, guidance_rescale, guidance_hold,
                     cond_latent_frames=cfg.dit.cond_latents)
    return cfg, cj, sizes


def set_sampler(dest: str, steps: Optional[Sequence[int]] = None, guidance: Optional[float] = None,
                pitch_guidance: Optional[float] = None, keyboard_guidance: Optional[float] = None,
                guidance_rescale: Optional[float] = None, guidance_hold: Optional[float] = None,
                **extra) -> Dict:
    """Write the sampler settings given (None = keep) into the installed ``dest/dit/config.json``,
    after checking them (the weights are not touched). Returns the new config dict.

    Raises:
        MatrixGameError: a setting out of range (the sampler's own checks), or no installed model.
    """
    from ..guidance import check_hold, check_rescale, check_scale

    cpath = os.path.join(dest, "dit", "config.json")
    if not os.path.isfile(cpath):
        raise MatrixGameError(f"no installed model in {dest} (no dit/config.json); install one with --run first.")
    with open(cpath, "r", encoding="utf-8") as f:
        cj = json.load(f)
    cj.update(extra)
    if steps:
        cj["denoising_step_list"] = [int(t) for t in steps]
    if guidance is not None:
        cj["action_guidance"] = check_scale("action guidance", guidance, "the installed value")
    for key, val in (("pitch_guidance", pitch_guidance), ("keyboard_guidance", keyboard_guidance)):
        if val is not None:
            cj[key] = check_scale(key.replace("_", " "), val, "the installed value")
    if guidance_rescale is not None:
        cj["guidance_rescale"] = check_rescale(guidance_rescale, "the installed value")
    if guidance_hold is not None:
        cj["guidance_hold"] = check_hold(guidance_hold, "the installed value")
    tmp = cpath + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cj, f, indent=1)
    os.replace(tmp, cpath)
    return cj


def install_decoder(run: str, dest: str = ROOT):
    """Install the decoder of ``RUN/decoder/vae.safetensors`` into the model in ``dest`` (cast to the
    shipped dtype): a decoder fine-tuned from the installed VAE, e.g. on the installed DiT's
    teacher-forced predictions (``train decoder`` with ``decoder.generated_share``). Everything is
    checked before anything is written.

    Returns:
        ``(figures, size)``: the card's figures of that decoder stage (``steps``, ``generated_share``,
        ``generator_sha256``, ``val_round_trip`` / ``val_generated`` ``[first, last]`` dB, ``final``) and
        the installed file's size in bytes.
    Raises:
        MatrixGameError: the file is missing; its encoder (every tensor outside ``conv2`` and the decoder)
            differs from the installed VAE's, so the DiT's latent space would move; or its log shows it
            decoded the predictions of another DiT than the installed one.
    """
    import torch
    from safetensors.torch import load_file

    from ..train.decoder import TRAINED_PREFIXES
    from ..train.latents import file_sha256
    from . import FILE_DTYPE, _cast_file

    src = os.path.join(run, "decoder", "vae.safetensors")
    if not os.path.isfile(src):
        raise MatrixGameError(f"{src} is missing; run `python -m matrix_game_core.train decoder --out {run}` first.")
    old_p = os.path.join(dest, "vae.safetensors")
    new, old = load_file(src), load_file(old_p)
    if set(new) != set(old):
        raise MatrixGameError(f"{src} is not a fine-tune of the VAE installed in {dest} (other tensors).")
    moved = [k for k in old if not k.startswith(TRAINED_PREFIXES) and not torch.equal(new[k].to(old[k].dtype), old[k])]
    if moved:
        raise MatrixGameError(f"{src} has another encoder than the VAE installed in {dest} ({moved[0]} differs): the "
                              f"DiT's latents would change. Fine-tune the decoder from the installed VAE (train "
                              f"--init-from {dest}).")
    log, val, last, final = _decoder_log(run)
    gens = [r for r in log if r.get("stage") == "decoder_generator"]
    dit_sha = file_sha256(os.path.join(dest, "dit", "model.safetensors"))
    other = [r for r in gens if r.get("generator_sha256") != dit_sha]
    if other:
        raise MatrixGameError(f"{src} was fine-tuned on the predictions of {other[0].get('generator')}, not of the DiT "
                              f"installed in {dest}; install that DiT first or fine-tune on this one.")
    gv = [r["generated_psnr"] for r in val if "generated_psnr" in r]
    figures = {"steps": last.get("step"), "generated_share": gens[-1]["generated_share"] if gens else None,
               "generator_sha256": dit_sha if gens else None,
               "val_round_trip": [val[0]["psnr"], val[-1]["psnr"]] if val else None,
               "val_generated": [gv[0], gv[-1]] if gv else None,
               "final": final}
    return figures, _cast_file(src, old_p, FILE_DTYPE)


def reevaluate(heldout: str, dest: str = ROOT, steps: Optional[Sequence[int]] = None, clips: int = 8,
               rollout_seconds: float = 10.0, decoder_run: Optional[str] = None, **sampler) -> Dict:
    """Re-evaluate the model installed in ``dest`` with new sampler settings (``steps`` and the
    keywords of :func:`set_sampler`) and rewrite its card and ``metrics.json``: the DiT weights, and
    the card's data and training figures (from the ``metrics.json`` already there), stay. With
    ``decoder_run``, that run's fine-tuned decoder is installed first (:func:`install_decoder`) and
    its figures join the card's.

    Raises:
        MatrixGameError: no installed model or no ``metrics.json`` in ``dest``; a bad setting; a decoder
            that :func:`install_decoder` refuses.
    """
    if not os.path.isfile(os.path.join(dest, "dit", "config.json")):
        raise MatrixGameError(f"no installed model in {dest} (no dit/config.json); install one with --run first.")
    mpath = os.path.join(dest, "metrics.json")
    if not os.path.isfile(mpath):
        raise MatrixGameError(f"{dest} has no metrics.json (written by a full build); build it with --run first.")
    with open(mpath, "r", encoding="utf-8") as f:
        info = json.load(f)
    if decoder_run:
        info["train"]["decoder_generated"], info["sizes"]["vae.safetensors"] = install_decoder(decoder_run, dest)
    info["config"] = set_sampler(dest, steps, **sampler)
    comp = load(root=dest)
    info["eval"] = evaluate_embedded(comp, heldout, clips=clips, rollout_seconds=rollout_seconds)
    info["speed"] = measure_speed(comp)
    write_card(os.path.join(dest, os.path.basename(CARD_FILE)), info)
    with open(mpath, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return info


def _merge_warm_start(run: str, train: Dict) -> None:
    """A run warm-started from a model (``train --init-from``, train/warmstart.py) logged no VAE
    stage and only its own DiT steps: the VAE and decoder figures are the source's, the DiT steps
    the source's plus the run's (``dit_warm_start_steps``: the run's own)."""
    p = os.path.join(run, "warm_start.json")
    if not os.path.isfile(p):
        return
    with open(p, "r", encoding="utf-8") as f:
        src = json.load(f).get("source_train") or {}
    for k in ("vae_steps", "vae_recipe", "vae_final", "decoder_steps", "decoder_final"):
        if src.get(k) is not None:
            train[k] = src[k]
    own = train.get("dit_steps") or 0
    train["dit_warm_start_steps"] = own
    if not own:        # the run trained no DiT steps of its own (e.g. it only distilled): the DiT is the source's
        for k in ("dit_final", "dit_mouse_gap", "dit_batch", "encoded_shards", "ema", "dit_clip_latents",
                  "mouse_init_gain"):
            if src.get(k) is not None:
                train[k] = src[k]
    if src.get("dit_steps"):
        train["dit_steps"] = int(src["dit_steps"]) + own


def _distill_figures(run: str, cfg) -> Dict:
    """The card's figures of the distillation stage (``RUN/distill/log.jsonl`` and ``cfg.distill``)."""
    sc = cfg.distill
    log = []
    for r in _read_log(os.path.join(run, "distill", "log.jsonl")):
        if r.get("stage") == "distill_resume":      # what ran past the checkpoint resumed from was lost
            log = [k for k in log if k.get("step", 0) <= r["step"]]
        log.append(r)
    steps = [r for r in log if r.get("stage") == "distill_resume" or "dmd_loss" in r]
    evals = [r for r in log if r.get("stage") == "distill" and "dmd_eval" in r]
    phases = []                 # (first step, real-score guidance) of each (re)start that changed it
    for r in log:
        if r.get("stage") in ("distill_start", "distill_resume") and r.get("real_guidance") is not None:
            rg = r["real_guidance"]
            g = {"guidance": rg.get("w"), "pitch_guidance": rg.get("w_pitch"), "keyboard_guidance": rg.get("w_keys"),
                 "guidance_rescale": rg.get("rescale")}
            if phases and phases[-1]["step"] == r["step"]:
                phases[-1]["real_guidance"] = g
            elif not phases or phases[-1]["real_guidance"] != g:
                phases.append({"step": r["step"], "real_guidance": g})
    first = next((r for r in log if r.get("stage") == "distill_start"), {})
    regs = [r["regression_loss"] for r in log if "regression_loss" in r][-10:]
    return {"phases": phases if len(phases) > 1 else None, "steps": max(r["step"] for r in steps) if steps else 0,
            "regression_weight": sc.regression_weight or None, "before": first.get("student_init_distill"),
            "regression_steps": sc.regression_steps if sc.regression_weight else None,
            "regression_loss": float(sum(regs) / len(regs)) if regs else None, "regression_loss_steps": len(regs),
            "batch": sc.batch, "lr": sc.lr, "critic_lr": sc.critic_lr,
            "critic_steps": sc.critic_steps, "ema": sc.ema, "denoising_step_list": list(sc.denoising_step_list),
            "real_guidance": {"guidance": sc.guidance, "pitch_guidance": sc.pitch_guidance,
                              "keyboard_guidance": sc.keyboard_guidance, "guidance_rescale": sc.guidance_rescale},
            "dmd_eval": [evals[0]["dmd_eval"], evals[-1]["dmd_eval"]] if evals else None,
            "dmd_eval_steps": [evals[0]["step"], evals[-1]["step"]] if evals else None}


def build(run: str, data: str, heldout: str, steps: Optional[Sequence[int]] = None, clips: int = 8,
          rollout_seconds: float = 10.0, dest: str = ROOT, hardware: str = "2 CPU cores",
          guidance: Optional[float] = None, pitch_guidance: Optional[float] = None,
          keyboard_guidance: Optional[float] = None, guidance_rescale: Optional[float] = None,
          guidance_hold: Optional[float] = None, model: str = "dit", student_weight: float = 1.0) -> Dict:
    """Export ``run``, install it (``model``: ``"dit"`` or the distilled ``"student"``) into ``dest``,
    evaluate and write the model card. Returns the info."""
    from ..data.shards import read_manifest

    cfg, cj, sizes = install_run(run, data, dest, steps, guidance, pitch_guidance, keyboard_guidance,
                                 guidance_rescale, guidance_hold, model, student_weight)
    m = read_manifest(data)
    comp = load(root=dest)
    ev = evaluate_embedded(comp, heldout, clips=clips, rollout_seconds=rollout_seconds, steps=steps)
    sp = measure_speed(comp)
    hm = read_manifest(heldout)
    vlog, dlog = _read_log(os.path.join(run, "vae", "log.jsonl")), _read_log(os.path.join(run, "dit", "log.jsonl"))
    vlast = next((r for r in reversed(vlog) if r.get("stage") == "vae"), {})
    # an unfinished run is exported from its checkpoint: its log may have run on past it
    with open(os.path.join(run, "export", "info.json"), "r", encoding="utf-8") as f:
        ex_info = json.load(f)
    upto = ex_info.get("dit_from_checkpoint_step") or float("inf")
    dlog = [r for r in dlog if r.get("step", 0) <= upto]
    dlast = next((r for r in reversed(dlog) if r.get("stage") == "dit" and "loss" in r), {})
    devl = next((r for r in reversed(dlog) if "eval_loss" in r), {})
    dec = {}
    if ex_info.get("vae_decoder_finetuned"):
        # the log may have run on past the export
        _, val, last, final = _decoder_log(run, ex_info.get("vae_decoder_step") or float("inf"))
        dec = {"decoder_steps": last.get("step"),
               "decoder_final": f"{final}; round trip of {cfg.decoder.val_clips} fixed val clips "
                                f"{val[0]['psnr']:.2f} -> {val[-1]['psnr']:.2f} dB" if val else ""}
    lat_meta = os.path.join(run, "latents", "meta.json")
    enc = cfg.dit.max_shards.get("train") if cfg.dit.max_shards else None
    if os.path.isfile(lat_meta):
        with open(lat_meta, "r", encoding="utf-8") as f:
            enc = f"{enc} ({json.load(f)['clips']['train']} clips)"
    info = {
        "sizes": sizes, "config": cj,
        "params": {"dit": sum(p.numel() for p in comp.dit.parameters()),
                   "vae": sum(p.numel() for p in comp.vae.parameters())},
        "data": {"frames": m["total_frames"], "fps": m["fps"], "shards": len(m["shards"]),
                 "maps": sorted({s["map"] for s in m["shards"]}), "mouse_units": m.get("mouse_units"),
                 "vizdoom_version": m.get("vizdoom_version")},
        "heldout": {"frames": hm["total_frames"], "shards": len(hm["shards"]),
                    "maps": sorted({s["map"] for s in hm["shards"]})},
        "train": {"vae_steps": vlast.get("step"), "dit_steps": dlast.get("step"), "dit_batch": cfg.dit.batch,
                  "vae_recipe": f"{cfg.vae.crop[0]}x{cfg.vae.crop[1]} crops of {cfg.vae.clip_frames}-frame clips, "
                                f"batch {cfg.vae.batch}, width {cfg.vae.dim}",
                  "dit_clip_latents": cfg.dit.clip_latents, "mouse_init_gain": cfg.dit.mouse_init_gain,
                  "dit_mouse_gap": devl.get("eval_mouse_gap"),
                  "ema": cfg.dit.ema, "hardware": hardware, "encoded_shards": enc,
                  "vae_final": f"loss {vlast.get('loss', float('nan')):.4f}, PSNR {vlast.get('psnr', float('nan')):.2f} dB "
                               f"(training crops)",
                  "dit_final": f"loss {dlast.get('loss', float('nan')):.4f}, fixed-noise eval loss "
                               f"{devl.get('eval_loss', float('nan')):.4f} (step {devl.get('step')})"
                               + (f"; eval loss with the mouse track negated minus with the true one "
                                  f"{devl['eval_mouse_gap']:+.4f}" if devl.get("eval_mouse_gap") is not None else ""),
                  **dec},
        "eval": ev, "speed": sp}
    if model == "student":
        info["train"]["distill"] = dict(_distill_figures(run, cfg), episodes=enc, student_weight=student_weight)
    _merge_warm_start(run, info["train"])
    write_card(os.path.join(dest, os.path.basename(CARD_FILE)), info)
    with open(os.path.join(dest, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m matrix_game_core.embedded.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="training run folder (preset embedded); required unless --reevaluate")
    ap.add_argument("--data", default=None, help="the training recording; required unless --reevaluate")
    ap.add_argument("--heldout", required=True, help="a recording of held-out maps")
    ap.add_argument("--steps", default=None, help="denoising_step_list to ship, e.g. 1000,750,500,250")
    ap.add_argument("--guidance", type=float, default=None,
                    help="action guidance scale to ship (sampler default of the model; 1 = off)")
    ap.add_argument("--pitch-guidance", type=float, default=None,
                    help="pitch (look up/down) guidance scale to ship (default: none, the action guidance)")
    ap.add_argument("--keyboard-guidance", type=float, default=None,
                    help="keyboard guidance scale to ship (default: none, the action guidance)")
    ap.add_argument("--guidance-rescale", type=float, default=None,
                    help="guidance rescale to ship, 0 (off) to 1 (matrix_game_core/guidance.py)")
    ap.add_argument("--guidance-hold", type=float, default=None,
                    help="guidance hold to ship, 0 (classic guidance) to 1 (matrix_game_core/guidance.py)")
    ap.add_argument("--model", default="dit", choices=("dit", "student"),
                    help="what to ship: the diffusion-forcing DiT or the distilled student (train distill)")
    ap.add_argument("--student-weight", type=float, default=1.0,
                    help="with --model student: ship w * student + (1 - w) * teacher weights (WiSE-FT weight "
                         "interpolation; 1 = the student as distilled)")
    ap.add_argument("--clips", type=int, default=8, help="held-out clips for next-block and action following")
    ap.add_argument("--rollout-seconds", type=float, default=10.0)
    ap.add_argument("--dest", default=ROOT, help="where to install (default: the package's embedded folder)")
    ap.add_argument("--hardware", default="2 CPU cores", help="what the run trained on (for the card)")
    ap.add_argument("--install-only", action="store_true",
                    help="export and install without evaluating (e.g. into a --dest to pick the guidance scales "
                         "with tools/pick_guidance.py --root); the model card is not written")
    ap.add_argument("--reevaluate", action="store_true",
                    help="no run folder: give the model installed in --dest the sampler flags given, evaluate it "
                         "again and rewrite its card (the data and training figures stay)")
    ap.add_argument("--decoder-run", default=None, metavar="RUN",
                    help="with --reevaluate: first install RUN/decoder/vae.safetensors, a decoder fine-tuned from the "
                         "installed VAE (e.g. on the installed DiT's predictions: train decoder with "
                         "decoder.generated_share), and add its figures to the card")
    a = ap.parse_args(argv)
    steps = [int(s) for s in a.steps.split(",")] if a.steps else None
    if a.decoder_run and not a.reevaluate:
        ap.error("--decoder-run goes with --reevaluate (a full build ships the run's own decoder)")
    if not a.reevaluate and not (a.run and a.data):
        ap.error("--run and --data are required (or --reevaluate, to re-evaluate the installed model)")
    sampler = dict(guidance=a.guidance, pitch_guidance=a.pitch_guidance, keyboard_guidance=a.keyboard_guidance,
                   guidance_rescale=a.guidance_rescale, guidance_hold=a.guidance_hold)
    if a.reevaluate:
        try:
            info = reevaluate(a.heldout, a.dest, steps, a.clips, a.rollout_seconds, a.decoder_run, **sampler)
        except MatrixGameError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return _report(info)
    if a.install_only:
        try:
            _, _, sizes = install_run(a.run, a.data, a.dest, steps, a.guidance, a.pitch_guidance,
                                      a.keyboard_guidance, a.guidance_rescale, a.guidance_hold, a.model,
                                      a.student_weight)
        except MatrixGameError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"installed": os.path.abspath(a.dest), "sizes": sizes}))
        return 0
    try:
        info = build(a.run, a.data, a.heldout, steps, a.clips, a.rollout_seconds, a.dest, a.hardware, a.guidance,
                     a.pitch_guidance, a.keyboard_guidance, a.guidance_rescale, a.guidance_hold, a.model,
                     a.student_weight)
    except MatrixGameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _report(info)


def _report(info: Dict) -> int:
    ev = info["eval"]
    print(json.dumps({"next_block": ev["next_block"], "following": {k: v["accuracy"] for k, v in
                                                                     ev["action_following"].items()},
                      "fps": info["speed"]["fps"], "sizes": info["sizes"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
