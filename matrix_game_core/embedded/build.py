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
from ..guidance import passes
from . import CARD_FILE, NAME, ROOT, install_from_export, load
from .evaluation import evaluate_embedded, measure_speed


def _passes_of(c: Dict) -> int:
    return passes(float(c.get("action_guidance", 1.0)), c.get("pitch_guidance"), c.get("keyboard_guidance"))


def _guidance_text(c: Dict) -> str:
    n = _passes_of(c)
    txt = f"action guidance {float(c.get('action_guidance', 1.0)):g}" + "".join(
        f", {part} guidance {float(c[f'{part}_guidance']):g}" for part in ("pitch", "keyboard")
        if c.get(f"{part}_guidance") is not None) + (
        f", guidance rescale {float(c['guidance_rescale']):g}" if n > 1 and c.get("guidance_rescale") else "") + (
        f", guidance hold {float(c['guidance_hold']):g}" if n > 1 and c.get("guidance_hold") else "")
    return txt + (" (1 = off: one DiT pass per denoising step)" if n == 1 else f" ({n} DiT passes per denoising step)")


def _passes_text(c: Dict) -> str:
    n = _passes_of(c)
    return "" if n == 1 else f" x {n} (guidance)"


def _fmt(v, nd=1):
    return "n/a" if v is None else f"{v:.{nd}f}"


def _distill_text(ds: Optional[Dict]) -> str:
    """The recipe's sentence on the distilled student (empty when the DiT itself ships)."""
    if not ds:
        return ""
    def words(rg):
        return ", ".join(f"{k.replace('_', ' ')} {float(v):g}" for k, v in rg.items() if v is not None)

    def guided_words(d):
        if d.get("phases"):
            return "; ".join(f"{words(p['real_guidance'])} from step {p['step']}" for p in d["phases"])
        return words(d["real_guidance"])

    before = ds.get("before")           # the run went on distilling an earlier student (--student-init)
    guided = guided_words(before or ds)
    more = ""
    if before or ds.get("regression_weight"):
        who = f"That student was distilled {ds['steps']} more steps into the shipped one" if before else "The student"
        more = f" {who} with the real score under action guidance ({guided_words(ds)})"
        if before:
            more += f", lr {ds['lr']:g}"
        if ds.get("regression_weight"):
            at = (f"the first {ds['regression_steps']} of the student's timesteps" if ds.get("regression_steps")
                  else "the student's own timesteps")
            more += (f", plus a data regression (weight {ds['regression_weight']:g}: the x0 MSE of recorded blocks "
                     f"predicted from recorded context, noised at {at}; the DMD loss only sees the student's own "
                     "rollouts)")
        more += "."
    base = before or ds
    return (f" The DiT was then distilled {base['steps']} steps into "
            f"{'a' if before else 'the shipped'} student (`train distill`: "
            "Self-Forcing rollouts with its own KV cache, arXiv 2506.08009, and a DMD loss, arXiv 2311.18828, "
            "with a critic trained alongside, DMD2 arXiv 2405.14867), whose real score is the teacher under "
            "action guidance (" + guided + f"), so that the student samples without guidance, one DiT pass per denoising step "
            f"({len(base['denoising_step_list'])} steps {base['denoising_step_list']}; "
            + (f"start frames and action tracks of the first {base['episodes']} training episodes; "
               if base.get("episodes") else "") + f"batch {base['batch']}, lr "
            f"{base['lr']:g}, critic lr {base['critic_lr']:g}, {base['critic_steps']} critic updates per student "
            f"update, EMA {base['ema']})." + more
            + (f" The shipped weights are the student's interpolated with the teacher's, {ds['student_weight']:g} x "
               f"student + {1 - ds['student_weight']:g} x teacher (WiSE-FT, arXiv 2109.01903), a point between the "
               "teacher's next-block fidelity and the student's following and free-play contrast."
               if ds.get("student_weight") not in (None, 1.0) else ""))


def _generated_decoder_text(gd: Optional[Dict]) -> str:
    """The card's sentence on a decoder fine-tuned on the shipped DiT's predictions (``install_decoder``)."""
    if not gd:
        return ""
    if gd.get("generated_share") is None:
        return (f" The VAE decoder was then fine-tuned {gd['steps']} more steps (`train decoder`, encoder frozen; "
                "installed with `embedded.build --reevaluate --decoder-run`).")
    return (f" Last, the VAE decoder was fine-tuned {gd['steps']} more steps on the shipped DiT's own predictions "
            f"(`train decoder` with `decoder.generated_share` {gd['generated_share']:g}: in that share of the "
            "training clips every block after the first is the DiT's teacher-forced next-block prediction, decoded "
            "against the recorded frames), so that it decodes what this DiT makes; the encoder, the latent space "
            "and the DiT are unchanged.")


def write_card(path: str, info: Dict) -> None:
    """Render ``MODEL_CARD.md`` from the build's measurements."""
    d, ev, sp = info["data"], info["eval"], info["speed"]
    af = ev["action_following"]
    L = [f"# {NAME}: model card", "",
         "A small Matrix-Game 2.0-architecture world model (causal DiT with the action module + Wan-2.1 VAE) "
         "trained by this pack's own recipe on ViZDoom play of Freedoom: Phase 2. It is the pack's default "
         "model: the CLI without `--checkpoint-dir`, the CPU workflows and the live session use it. It is "
         "**not** the official Matrix-Game 2.0 model (use `--checkpoint-dir` / the ComfyUI loader for that).", "",
         "## Files", "",
         "| file | what | size |", "|---|---|---|"]
    for k, v in info["sizes"].items():
        L.append(f"| `{k}` | {'CausalWanModel, universal mode, official file format' if 'dit' in k else 'Wan-2.1 VAE, width 16'}"
                 f" (float16) | {v / 1e6:.1f} MB |")
    c = info["config"]
    L += ["", f"DiT: dim {c['dim']}, {c['num_layers']} layers, {c['num_heads']} heads, action module in layers "
          f"{c['action_config']['blocks']}, local attention window {c['local_attn_size']} latent frames, "
          f"{info['params']['dit'] / 1e6:.1f} M parameters; VAE: {info['params']['vae'] / 1e6:.1f} M parameters. "
          f"Video {c['video_size'][1]}x{c['video_size'][0]} (latents {c['video_size'][1] // 8}x{c['video_size'][0] // 8}), "
          f"{len(c['denoising_step_list'])} denoising steps {c['denoising_step_list']}, "
          f"{_guidance_text(c)}, image-encoder free "
          f"(zero image tokens), conditioning latents {c.get('cond_latent_frames')} (last repeated).", "",
          "## Data", "",
          f"ViZDoom {d.get('vizdoom_version', '?')} recordings (`python -m matrix_game_core.data record`), "
          f"{d['frames']:,} frames ({d['frames'] / d['fps'] / 3600:.2f} h at {d['fps']} frames/s) in {d['shards']} "
          f"episodes on {len(d['maps'])} maps ({', '.join(d['maps'])}), no monsters, {d['mouse_units']}. "
          f"Held out (never trained on): maps {', '.join(info['heldout']['maps'])}, "
          f"{info['heldout']['frames']:,} frames in {info['heldout']['shards']} episodes. "
          f"DiT latents were encoded from the first {info['train']['encoded_shards']} training episodes.", "",
          "## Recipe", "",
          "`python -m matrix_game_core.train all --preset embedded --device cpu` (see docs/data_and_training.md): "
          f"VAE {info['train']['vae_steps']} steps (L1 + SSIM + gradient loss + latent anchor, "
          f"{info['train'].get('vae_recipe', '')}); DiT {info['train']['dit_steps']} steps of diffusion forcing "
          + (f"(the last {info['train']['dit_warm_start_steps']} warm-started from the previous model's weights, "
             "`train --init-from`) " if info["train"].get("dit_warm_start_steps") else "") +
          f"(batch {info['train']['dit_batch']}, {info['train'].get('dit_clip_latents', 9)}-latent clips, flow-matching "
          f"MSE, EMA {info['train']['ema']}, mouse inputs of the action MLPs scaled by "
          f"{info['train'].get('mouse_init_gain', 1.0):g} at init), on {info['train']['hardware']}."
          + (f" The VAE decoder was then fine-tuned {info['train']['decoder_steps']} steps with the encoder frozen "
             "(stage 1b, `train decoder`: MSE-weighted loss on full 33-frame clips; the latent space, and so the "
             "DiT, is unchanged)." if info["train"].get("decoder_steps") else "")
          + _distill_text(info["train"].get("distill")) + _generated_decoder_text(info["train"].get("decoder_generated")),
          "",
          "| stage | final losses |", "|---|---|",
          f"| VAE | {info['train']['vae_final']} |"]
    if info["train"].get("decoder_final"):
        L.append(f"| VAE decoder fine-tune | {info['train']['decoder_final']} |")
    L.append(f"| DiT | {info['train']['dit_final']} |")
    gd = info["train"].get("decoder_generated")
    ds = info["train"].get("distill")
    if ds and ds.get("dmd_eval"):
        bf = ds.get("before") or {}
        if bf.get("dmd_eval"):
            L.append(f"| distillation (the earlier student) | DMD loss of the full rollout on fixed clips "
                     f"{bf['dmd_eval'][0]:.4f} (step {bf['dmd_eval_steps'][0]}) -> {bf['dmd_eval'][1]:.4f} "
                     f"(step {bf['dmd_eval_steps'][1]}) |")
        L.append(f"| distillation ({'shipped ' if bf else ''}student) | DMD loss of the full rollout on fixed clips "
                 f"{ds['dmd_eval'][0]:.4f} (step {ds['dmd_eval_steps'][0]}) -> {ds['dmd_eval'][1]:.4f} "
                 f"(step {ds['dmd_eval_steps'][1]})"
                 + (f"; data regression loss {ds['regression_loss']:.4f} (mean of the last "
                    f"{ds['regression_loss_steps']} logged steps)" if ds.get("regression_loss") is not None else "")
                 + " |")
    if gd:
        L.append(f"| VAE decoder on the DiT's predictions | {gd['final']}"
                 + (f"; fixed val clips: round trip {gd['val_round_trip'][0]:.2f} -> {gd['val_round_trip'][1]:.2f} dB"
                    if gd.get("val_round_trip") else "")
                 + (f", the DiT's teacher-forced predictions {gd['val_generated'][0]:.2f} -> "
                    f"{gd['val_generated'][1]:.2f} dB" if gd.get("val_generated") else "") + " |")
    L += ["",
          "## Behaviour on the held-out maps", "",
          f"Project evaluator (`matrix_game_core.evaluate`), {ev['clips']} clips of {ev['frames_per_clip']} frames, seed 0.", "",
          "| next block (teacher forced) | PSNR | SSIM |", "|---|---|---|"]
    rows = (("model", f"model ({_guidance_text(ev)})"), ("model_unguided", "model without guidance"),
            ("copy_last", "copy-last-frame baseline"),
            ("round_trip", "ceiling: the recorded block through this VAE (encode + decode)"))
    L += [f"| {label} | {ev['next_block'][k]['psnr']:.2f} dB | {ev['next_block'][k]['ssim']:.3f} |"
          for k, label in rows if k in ev["next_block"]]
    has_off = bool(ev.get("action_following_unguided"))        # an unguided sampler has no such column
    L += [
          "", f"Action following (benchmark script: an idle block, then turn left, turn right, look up, look down, "
          f"twice; the sampler's {_guidance_text(ev)}), beside"
          + (" the same model without guidance and," if has_off else ",") +
          " as the ceiling, the evaluator on each clip's recorded play under its own recorded mouse "
          "track (201 frames), as recorded and after a round trip through this VAE"
          + (f"; and with each command held {ev['held_blocks']} blocks in a row (a player holding the key: its "
             f"blocks after the first, where the motion must go on; blocks in brackets)"
             if ev.get("action_following_held") else "") + ":", "",
          "| action following | blocks | accuracy | picture motion the commanded way "
          + (f"| held {ev['held_blocks']} blocks " if ev.get("action_following_held") else "")
          + ("| without guidance " if has_off else "") + "| recorded play | recorded, VAE round trip |",
          "|---|---|---|---|" + ("---|" if ev.get("action_following_held") else "") + ("---|" if has_off else "")
          + "---|---|"]
    pct = lambda v: f"{_fmt(None if v['accuracy'] is None else 100 * v['accuracy'], 0)} %"  # noqa: E731
    off, rec, rt, held = (ev.get(k) or {} for k in ("action_following_unguided", "action_following_recorded",
                                                     "action_following_round_trip", "action_following_held"))
    for k in ("turn_left", "turn_right", "look_up", "look_down"):
        v = af[k]
        need = 1e-3 * (c["video_size"][1] if k.startswith("turn") else c["video_size"][0])
        extra = [pct(d[k]) + (f" ({d[k]['n']})" if d is not off else "") if k in d else "-"
                 for d in ((held,) if held else ()) + ((off,) if has_off else ()) + (rec, rt)]
        L.append(f"| {k.replace('_', ' ')} | {v['n']} | {pct(v)} "
                 f"| {_fmt(v.get('toward_px'), 3)} px/frame (followed from {need:.3f}) | " + " | ".join(extra) + " |")
    ro = ev["rollout"]
    L += ["", f"Turns at 0.1 (5 degrees per frame); looks at {ev['pitch_magnitude']} (Doom limits the pitch to about "
          "+-30 degrees). Motion: the evaluator's estimator (pairs of frames 2 apart, half-whitened phase "
          "correlation), which sees the stepwise motion of VAE-decoded video; classical frame-to-frame phase "
          "correlation scores the VAE round trip of recorded play ~3 % (docs/data_and_training.md §3c).", "",
          f"Free-running rollout ({ro['frames']} frames = {ro['frames'] / ro['fps']:.1f} s at {ro['fps']} frames/s, "
          f"held-out {ro['map']}, recorded actions, no teacher forcing): per second, PSNR against the recorded frames "
          "and contrast (std of luminance, 0..1) of generated vs recorded frames. A collapse to grey shows as "
          "contrast falling to ~0, noise as PSNR falling while contrast rises.", "",
          "| second | PSNR vs recorded | contrast generated | contrast recorded |", "|---|---|---|---|"]
    for r in ro["per_second"]:
        L.append(f"| {r['second']} | {r['psnr']:.2f} dB | {r['contrast_generated']:.3f} | {r['contrast_recorded']:.3f} |")
    L += ["", "## Speed on this pack's CI-class CPU (2 cores)", "",
          f"`benchmarks/bench_embedded.py`: {sp['fps']:.1f} video frames/s steady state (DiT "
          f"{len(c['denoising_step_list'])} denoising steps"
          f"{_passes_text(c)} + context pass + streaming "
          f"VAE decode, {c['video_size'][1]}x"
          f"{c['video_size'][0]}, fp32, {sp['threads']} threads), {sp['seconds_per_block'] * 1000:.0f} ms per 12-frame "
          f"block; key press to the first frame it conditions: {sp['key_to_frame_ms']:.0f} ms (worst case).", "",
          "## Licence", "", "Trained on imagery of Freedoom: Phase 2 (BSD-3); see `NOTICE.md`.", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


def _read_log(path: str) -> List[Dict]:
    if not os.path.isfile(path):
        return []
    with open(path, "r", encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


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
    upto = float("inf")                  # the log may have run on past the file (vae.json: the step it holds)
    side = os.path.join(run, "decoder", "vae.json")
    if os.path.isfile(side):
        with open(side, "r", encoding="utf-8") as f:
            upto = json.load(f).get("step") or upto
    log = [r for r in _read_log(os.path.join(run, "decoder", "log.jsonl")) if r.get("step", 0) <= upto]
    gens = [r for r in log if r.get("stage") == "decoder_generator"]
    dit_sha = file_sha256(os.path.join(dest, "dit", "model.safetensors"))
    other = [r for r in gens if r.get("generator_sha256") != dit_sha]
    if other:
        raise MatrixGameError(f"{src} was fine-tuned on the predictions of {other[0].get('generator')}, not of the DiT "
                              f"installed in {dest}; install that DiT first or fine-tune on this one.")
    val = [r for r in log if r.get("stage") == "decoder_val"]
    last = next((r for r in reversed(log) if r.get("stage") == "decoder"), {})
    gv = [r["generated_psnr"] for r in val if "generated_psnr" in r]
    figures = {"steps": last.get("step"), "generated_share": gens[-1]["generated_share"] if gens else None,
               "generator_sha256": dit_sha if gens else None,
               "val_round_trip": [val[0]["psnr"], val[-1]["psnr"]] if val else None,
               "val_generated": [gv[0], gv[-1]] if gv else None,
               "final": f"loss {last.get('loss', float('nan')):.4f}, PSNR {last.get('psnr', float('nan')):.2f} dB "
                        f"(training clips)"}
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
        dupto = ex_info.get("vae_decoder_step") or float("inf")     # the log may have run on past the export
        declog = [r for r in _read_log(os.path.join(run, "decoder", "log.jsonl")) if r.get("step", 0) <= dupto]
        val = [r for r in declog if r.get("stage") == "decoder_val"]
        last = next((r for r in reversed(declog) if r.get("stage") == "decoder"), {})
        dec = {"decoder_steps": last.get("step"),
               "decoder_final": f"loss {last.get('loss', float('nan')):.4f}, PSNR {last.get('psnr', float('nan')):.2f} dB "
                                f"(training clips); round trip of {cfg.decoder.val_clips} fixed val clips "
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
