"""The embedded model's ``MODEL_CARD.md``, rendered from a build's measurements (the ``metrics.json``
that :mod:`.build` writes beside the weights): files, data, recipe and the lineage of its stages,
behaviour on the held-out maps (:mod:`.evaluation`) and speed."""
from __future__ import annotations

from typing import Dict, Optional

from ..guidance import passes
from . import NAME


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
