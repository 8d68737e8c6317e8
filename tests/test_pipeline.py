"""Start-image preparation (official centre crop) and conditioning shapes."""
import pytest
import torch

from matrix_game_core.errors import MatrixGameError
from matrix_game_core.pipeline import _crop_box, encode_conditioning, frames_to_images, prepare_image, random_tiny


def test_official_crop_box():
    # official _resizecrop on a 1280x720 image keeps 1280x704 (aspect 352:640), centred
    assert _crop_box(1280, 720, 352, 640) == (0.0, 8.0, 1280.0, 712.0)
    # a tall image keeps the full width
    l, t, r, b = _crop_box(700, 485, 352, 640)
    assert (l, r) == (0.0, 700.0) and abs((b - t) - 385) < 1e-9


@pytest.mark.parametrize("crop", ["center", "stretch", "pad"])
def test_prepare_image_layouts_and_range(crop):
    img = torch.rand(1, 400, 900, 3)
    a = prepare_image(img, crop=crop)
    b = prepare_image(img.permute(0, 3, 1, 2), crop=crop)
    assert a.shape == (1, 3, 352, 640) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


def test_center_crop_keeps_the_middle():
    img = torch.zeros(1, 352, 1000, 3)
    img[:, :, 180:820] = 1.0  # the central 640 columns are white
    out = prepare_image(img, crop="center")
    assert out.min() == 1.0  # nothing of the black sides survives the official crop


def test_prepare_image_errors():
    with pytest.raises(MatrixGameError, match="at least 64 px"):
        prepare_image(torch.rand(1, 9, 17, 3))
    with pytest.raises(MatrixGameError, match="RGB image"):
        prepare_image(torch.rand(1, 64, 64, 4))
    with pytest.raises(MatrixGameError, match="crop mode"):
        prepare_image(torch.rand(1, 64, 64, 3), crop="zoom")


def test_conditioning_shapes_and_mask():
    comp = random_tiny("templerun")
    img = prepare_image(torch.rand(1, 128, 128, 3), height=64, width=96)
    cond = encode_conditioning(comp.vae, comp.image_encoder, img, 3)
    assert cond.cond_concat.shape == (1, 20, 3, 8, 12) and cond.visual_context.shape == (1, 257, 64)
    assert torch.all(cond.cond_concat[:, :4, 0] == 1) and torch.all(cond.cond_concat[:, :4, 1:] == 0)
    # frames past the encoded length repeat the last one
    assert torch.equal(cond.frames(2, 3)[:, :, 1], cond.cond_concat[:, :, 2])
    ims = frames_to_images(torch.zeros(1, 3, 5, 8, 12))
    assert ims.shape == (5, 8, 12, 3) and torch.all(ims == 0.5)


def _small_session(mode):
    from matrix_game_core.sampling import WorldSession
    comp = random_tiny(mode)
    img = prepare_image(torch.rand(1, 128, 128, 3), height=64, width=96)
    cond = encode_conditioning(comp.vae, None, img, 3)
    cond.visual_context = torch.zeros(1, 257, comp.dit.cfg.img_dim)
    return comp, WorldSession(comp.dit, cond, seed=0)


@pytest.mark.parametrize("kb,ms,msg", [
    ([5, 0, 0, 0], [0.0, 0.1], "keyboard values must be 0 .up. or 1 .held.; got 5"),
    ([-1, 0, 0, 0], [0.0, 0.1], "got -1"),
    ([1, 0, 0, 0], [float("nan"), 0.1], "mouse values must be finite .* got nan"),
    ([1, 0, 0, 0], [0.0, float("inf")], "got inf"),
    ([1, 0, 0, 0], [0.0, 3.0], r"within \+-1 per frame"),
    ([1, 0, 0, 0], None, r"needs mouse rows \(pitch, yaw\) for every block"),
    (torch.zeros(8, 4), torch.zeros(8, 2), r"keyboard rows for block 0 have shape \(1, 8, 4\)"),
])
def test_world_session_step_applies_the_track_rules(kb, ms, msg):
    _, s = _small_session("universal")
    with pytest.raises(MatrixGameError, match=msg):
        s.step(keyboard=kb, mouse=ms, decode=False)
    assert s.block == 0 and s.keyboard_rows.shape[1] == 0          # nothing was appended
    assert s.step(keyboard=[1, 0, 0, 0], mouse=[0.0, 0.1], decode=False).latents.shape[2] == 3


def test_world_session_step_refuses_a_mouse_for_templerun():
    _, s = _small_session("templerun")
    with pytest.raises(MatrixGameError, match="mode 'templerun' has no mouse input; pass mouse=None"):
        s.step(keyboard=[0, 1, 0, 0, 0, 0, 0], mouse=[0.0, 0.1], decode=False)
    assert s.step(keyboard=[0, 1, 0, 0, 0, 0, 0], decode=False).block == 0


def test_nan_weights_stop_the_run_naming_the_block():
    comp, s = _small_session("gta_drive")
    s.step(keyboard=[1, 0], mouse=[0.0, 0.1], decode=False)
    with torch.no_grad():
        comp.dit.blocks[1].ffn[0].weight.fill_(float("nan"))
    with pytest.raises(MatrixGameError, match="block 1: the model produced non-finite latents"):
        s.step(keyboard=[1, 0], mouse=[0.0, 0.1], decode=False)


def test_sixteen_bit_png_start_image_keeps_its_brightness(tmp_path):
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    from matrix_game_core.pipeline import load_image
    grey = np.full((70, 90), 35000, np.uint16)
    grey[:, :45] = 10000
    Image.fromarray(grey).save(tmp_path / "g16.png")                          # opens as I;16
    img = load_image(str(tmp_path / "g16.png"))
    assert img.shape == (1, 70, 90, 3) and img.dtype == torch.float32
    torch.testing.assert_close(img[0, 0, 0], torch.full((3,), 10000 / 65535))
    torch.testing.assert_close(img.mean(), torch.tensor((10000 + 35000) / 2 / 65535))
    # 16-bit RGB (Pillow reads it as 8-bit RGB): the same brightness
    h, w = 70, 90
    raw = b"".join(b"\x00" + np.full((w, 3), 35000, ">u2").tobytes() for _ in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    (tmp_path / "rgb16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                                         + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert abs(load_image(str(tmp_path / "rgb16.png")).mean().item() - 35000 / 65535) < 2 / 255
    Image.fromarray(np.full((70, 90, 3), 128, np.uint8)).save(tmp_path / "rgb8.png")
    assert torch.all(load_image(str(tmp_path / "rgb8.png")) == torch.tensor(128, dtype=torch.uint8).float() / 255)


def _one_step_block0(comp, cond, guidance, kb, ms):
    from matrix_game_core.sampling import WorldSession
    s = WorldSession(comp.dit, cond, seed=3, denoising_step_list=[1000], action_guidance=guidance)
    return s.step(keyboard=kb, mouse=ms, decode=False).latents.double()


def test_action_guidance_is_classifier_free_guidance_on_the_actions():
    from matrix_game_core.sampling import WorldSession
    comp, s = _small_session("universal")
    cond = s.cond
    kb, ms = [1, 0, 0, 1], [0.05, -0.1]
    with_actions = _one_step_block0(comp, cond, None, kb, ms)      # the tiny config's default: 1 = off
    no_actions = _one_step_block0(comp, cond, 1.0, [0, 0, 0, 0], [0.0, 0.0])
    assert (with_actions - no_actions).abs().max() > 1e-4             # the actions matter to this model
    # one denoising step: x0 = x - sigma * flow is affine in the flow, so the guided x0 is the same
    # extrapolation of the two unguided ones
    for w in (0.0, 2.5):
        guided = _one_step_block0(comp, cond, w, kb, ms)
        torch.testing.assert_close(guided, no_actions + w * (with_actions - no_actions), atol=1e-5, rtol=1e-5)
    # several steps and blocks run, and w = 1 is exactly the unguided sampler
    a = WorldSession(comp.dit, cond, seed=1, action_guidance=1.0)
    b = WorldSession(comp.dit, cond, seed=1)
    for blk in range(2):
        n = 9 if blk == 0 else 12
        la = a.step(torch.ones(n, 4), torch.full((n, 2), 0.1), decode=False).latents
        lb = b.step(torch.ones(n, 4), torch.full((n, 2), 0.1), decode=False).latents
        assert torch.equal(la, lb)


def _one_step(comp, cond, kb, ms, **guidance):
    from matrix_game_core.sampling import WorldSession
    s = WorldSession(comp.dit, cond, seed=3, denoising_step_list=[1000], **guidance)
    return s.step(keyboard=kb, mouse=ms, decode=False).latents.double()


def test_pitch_guidance_is_nested_guidance_with_its_own_scale_for_the_pitch():
    from matrix_game_core.sampling import WorldSession
    comp, s = _small_session("universal")
    cond, kb, ms = s.cond, [1, 0, 0, 1], [0.05, -0.1]
    f = _one_step(comp, cond, kb, ms)                                     # unguided, all actions
    f_p0 = _one_step(comp, cond, kb, [0.0, -0.1])                         # pitch set to 0
    f_0 = _one_step(comp, cond, [0, 0, 0, 0], [0.0, 0.0])                 # no actions
    assert (f - f_p0).abs().max() > 1e-4                                  # the pitch matters to this model
    # one denoising step: x0 is affine in the flow, so the guided x0 combines the unguided ones alike:
    # f(0) + w (f(a without pitch) - f(0)) + w_p (f(a) - f(a without pitch))
    for w, wp in ((1.0, 4.0), (2.0, 5.0), (0.0, 3.0), (2.5, 0.0)):
        got = _one_step(comp, cond, kb, ms, action_guidance=w, pitch_guidance=wp)
        torch.testing.assert_close(got, f_0 + w * (f_p0 - f_0) + wp * (f - f_p0), atol=1e-5, rtol=1e-5)
    # unset, or equal to the action guidance, it is plain action guidance, bit for bit
    plain = _one_step(comp, cond, kb, ms, action_guidance=2.0)
    assert torch.equal(plain, _one_step(comp, cond, kb, ms, action_guidance=2.0, pitch_guidance=2.0))
    # the model config's own value is used when the session does not set one
    comp.dit.cfg.pitch_guidance = 4.0
    try:
        torch.testing.assert_close(_one_step(comp, cond, kb, ms), f_p0 + 4.0 * (f - f_p0), atol=1e-5, rtol=1e-5)
        assert WorldSession(comp.dit, cond).pitch_guidance == 4.0
        assert WorldSession(comp.dit, cond, pitch_guidance=1.0).pitch_guidance == 1.0
    finally:
        comp.dit.cfg.pitch_guidance = None
    s.action_guidance = 3.0                                               # follows the action guidance
    assert s.pitch_guidance == 3.0


def test_keyboard_guidance_nests_below_the_mouse():
    from matrix_game_core.guidance import passes
    comp, s = _small_session("universal")
    cond, kb, ms = s.cond, [1, 0, 0, 1], [0.05, -0.1]
    f = _one_step(comp, cond, kb, ms)
    f_ky = _one_step(comp, cond, kb, [0.0, -0.1])                          # keys + yaw
    f_k = _one_step(comp, cond, kb, [0.0, 0.0])                            # keys only
    f_0 = _one_step(comp, cond, [0, 0, 0, 0], [0.0, 0.0])
    assert (f_k - f_0).abs().max() > 1e-4                                  # the keys matter to this model
    for w, wp, wk in ((2.0, 6.0, 1.0), (1.5, 1.5, 0.5), (2.0, 2.0, 3.0), (2.0, 5.0, 3.0)):
        got = _one_step(comp, cond, kb, ms, action_guidance=w, pitch_guidance=wp, keyboard_guidance=wk)
        want = f_0 + wk * (f_k - f_0) + w * (f_ky - f_k) + wp * (f - f_ky)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # one DiT pass per distinct condition level
    assert [passes(1.0), passes(2.0), passes(2.0, 6.0), passes(2.0, 6.0, 1.0), passes(2.0, 6.0, 3.0),
            passes(1.0, 1.0, 3.0), passes(2.0, has_mouse=False), passes(1.0, 4.0, has_mouse=False)] == [1, 2, 3, 3, 4, 3, 2, 1]


@pytest.mark.parametrize("w", [-1.0, float("nan"), 21.0, "a lot"])
def test_pitch_guidance_out_of_range_says_the_range(w):
    from matrix_game_core.sampling import WorldSession
    comp, s = _small_session("universal")
    with pytest.raises(MatrixGameError, match=r"pitch guidance must be a number from 0 to 20 \(1 = off; this "
                                              r"model's own is the action guidance\)"):
        WorldSession(comp.dit, s.cond, pitch_guidance=w)
    with pytest.raises(MatrixGameError, match="pitch guidance must be a number from 0 to 20"):
        s.pitch_guidance = w
    assert s.pitch_guidance == 1.0                                        # unchanged


def test_pitch_guidance_on_a_model_without_mouse_says_so():
    from matrix_game_core.sampling import WorldSession
    comp, s = _small_session("templerun")
    assert s.pitch_guidance == 1.0
    with pytest.raises(MatrixGameError, match="pitch guidance needs a model with mouse input"):
        WorldSession(comp.dit, s.cond, pitch_guidance=3.0)


@pytest.mark.parametrize("w", [-1.0, float("nan"), 21.0])
def test_action_guidance_out_of_range_says_the_range(w):
    from matrix_game_core.sampling import WorldSession
    comp, s = _small_session("universal")
    with pytest.raises(MatrixGameError, match="action guidance must be a number from 0 to 20"):
        WorldSession(comp.dit, s.cond, action_guidance=w)
    with pytest.raises(MatrixGameError, match="action guidance must be a number from 0 to 20"):
        s.action_guidance = w
    assert s.action_guidance == 1.0                                       # unchanged


def test_guidance_steps_guide_only_the_first_denoising_steps():
    """Guidance interval: guidance_steps 0 is the unguided sampler and len(steps) the fully guided
    one, bit for bit; in between, the later steps run one DiT pass instead of two."""
    from matrix_game_core.sampling import WorldSession
    comp, s = _small_session("universal")
    kb, ms = torch.ones(9, 4), torch.full((9, 2), 0.1)
    calls = []
    hook = comp.dit.register_forward_hook(lambda *a: calls.append(1))

    def block0(**kw):
        calls.clear()
        ses = WorldSession(comp.dit, s.cond, seed=2, denoising_step_list=[1000, 500], **kw)
        return ses.step(kb, ms, decode=False).latents, len(calls)

    try:
        off, n_off = block0(action_guidance=1.0)
        full, n_full = block0(action_guidance=2.0)
        assert (n_off, n_full) == (3, 5)                           # 2 steps x passes + the context pass
        assert torch.equal(block0(action_guidance=2.0, guidance_steps=0)[0], off)
        assert torch.equal(block0(action_guidance=2.0, guidance_steps=2)[0], full)
        assert torch.equal(block0(action_guidance=2.0, guidance_steps=7)[0], full)
        half, n_half = block0(action_guidance=2.0, guidance_steps=1)
        assert n_half == 4 and not torch.equal(half, off) and not torch.equal(half, full)
        comp.dit.cfg.guidance_steps = 1                              # the model config's default
        try:
            assert WorldSession(comp.dit, s.cond).guidance_steps == 1
            assert torch.equal(block0(action_guidance=2.0)[0], half)
        finally:
            comp.dit.cfg.guidance_steps = None
    finally:
        hook.remove()
    for bad in (-1, 1.5, True):
        with pytest.raises(MatrixGameError, match="guidance steps must be a whole number >= 0"):
            WorldSession(comp.dit, s.cond, guidance_steps=bad)


def test_guidance_hold_guides_against_the_held_actions():
    """Guidance hold h: the levels below all the actions see h x the actions of before the block,
    held through it. The first block has no past (guided against no actions, as classic guidance);
    with h = 1 a block that goes on with the same actions is the unguided sampler and one that
    changes them is guided against holding the old ones (one denoising step: the guided x0 is
    ``x0(held) + w (x0(actions) - x0(held))``); with h = 0.5 the reference pass sees half the held
    window. h = 0 is classic guidance bit for bit. No extra DiT pass."""
    from matrix_game_core.guidance import held_reference
    from matrix_game_core.sampling import WorldSession
    comp, s = _small_session("universal")
    kb0, ms0 = torch.tensor([1.0, 0, 0, 0]).repeat(9, 1), torch.tensor([0.0, 0.1]).repeat(9, 1)

    def run(kb1, ms1, w1, hold=1.0, hold1=None):
        ses = WorldSession(comp.dit, s.cond, seed=4, denoising_step_list=[1000], action_guidance=3.0,
                           guidance_hold=hold)
        b0 = ses.step(kb0, ms0, decode=False).latents
        ses.action_guidance = w1
        if hold1 is not None:
            ses.guidance_hold = hold1
        return b0, ses.step(kb1, ms1, decode=False).latents.double()

    steady = (kb0[:1].repeat(12, 1), ms0[:1].repeat(12, 1))              # W + turning right goes on
    change = (kb0[:1].repeat(12, 1), torch.tensor([0.05, -0.1]).repeat(12, 1))   # look up, turn left
    b0_held, classic = run(*change, 3.0, hold=0.0)
    assert torch.equal(b0_held, run(*change, 3.0)[0])                    # block 0: against no actions
    torch.testing.assert_close(run(*steady, 3.0)[1], run(*steady, 1.0)[1], atol=1e-6, rtol=0)
    actual, held = run(*change, 1.0)[1], run(*steady, 1.0)[1]
    assert (actual - held).abs().max() > 1e-4                            # the change matters to this model
    torch.testing.assert_close(run(*change, 3.0)[1], held + 3.0 * (actual - held), atol=1e-5, rtol=1e-5)
    assert (classic - run(*change, 3.0)[1]).abs().max() > 1e-4
    assert torch.equal(run(*change, 3.0, hold=1.0, hold1=0.0)[1], classic)    # may change between blocks
    # h = 0.5: still two DiT passes per guided step (+ the context pass); the first sees half the held window
    seen = []
    hook = comp.dit.register_forward_pre_hook(lambda mod, args: seen.append(args[5].clone()))
    try:
        ses = WorldSession(comp.dit, s.cond, seed=4, denoising_step_list=[1000], action_guidance=3.0,
                           guidance_hold=0.5)
        ses.step(kb0, ms0, decode=False)
        seen.clear()
        ses.step(*change, decode=False)
    finally:
        hook.remove()
    assert len(seen) == 3
    win = seen[1]                                                        # all the actions: the block's window
    torch.testing.assert_close(seen[0], 0.5 * held_reference(win, 8, first_block=False))
    assert torch.equal(seen[0][:, 8:], 0.5 * ms0[:1].expand(12, 2)[None])   # W-turn-right held, halved
    # the helper: the block's own rows (from index 8 of the 20-row window) hold row 7; the first block: zeros
    w20 = torch.arange(40, dtype=torch.float32).view(1, 20, 2)
    ref = held_reference(w20, 8, first_block=False)
    assert torch.equal(ref[:, :8], w20[:, :8]) and torch.equal(ref[:, 8:], w20[:, 7:8].expand(1, 12, 2))
    assert torch.equal(held_reference(w20, 8, first_block=True), torch.zeros_like(w20))
    # the model config's own hold is used when the session sets none; one clear error for a bad one
    comp.dit.cfg.guidance_hold = 0.5
    try:
        assert WorldSession(comp.dit, s.cond).guidance_hold == 0.5
    finally:
        comp.dit.cfg.guidance_hold = 0.0
    for bad in (-0.1, 1.5, float("nan"), "held"):
        with pytest.raises(MatrixGameError, match=r"guidance hold must be a number from 0 to 1 \(0 = off"):
            WorldSession(comp.dit, s.cond, guidance_hold=bad)
    with pytest.raises(MatrixGameError, match="guidance hold must be a number from 0 to 1"):
        s.guidance_hold = 2.0
    assert s.guidance_hold == 0.0                                         # unchanged


def test_guidance_rescale_matches_the_std_of_the_conditional_x0():
    """Guidance rescale (arXiv 2305.08891 eq. 15-16): one denoising step, so the step's x0 is the
    block's latents. phi 1 gives the guided x0 scaled to the std of the x0 under all the actions,
    phi 0.5 the mean of that and plain guidance; 0 (the default) is plain guidance bit for bit, an
    unguided step is untouched, no extra DiT pass is run, and bad values get one clear error."""
    from matrix_game_core.guidance import rescale_flow
    from matrix_game_core.sampling import WorldSession
    comp, s = _small_session("universal")
    cond, kb, ms = s.cond, [1, 0, 0, 1], [0.05, -0.1]
    f = _one_step(comp, cond, kb, ms)                                     # unguided x0, all actions
    g = _one_step(comp, cond, kb, ms, action_guidance=3.0)                # plain guidance
    assert abs(float(g.std() / f.std()) - 1.0) > 1e-3                     # guidance changes the std here
    r1 = _one_step(comp, cond, kb, ms, action_guidance=3.0, guidance_rescale=1.0)
    torch.testing.assert_close(r1, g * (f.std() / g.std()), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1.std(), f.std(), atol=1e-6, rtol=1e-5)
    half = _one_step(comp, cond, kb, ms, action_guidance=3.0, guidance_rescale=0.5)
    torch.testing.assert_close(half, 0.5 * r1 + 0.5 * g, atol=1e-5, rtol=1e-5)
    assert torch.equal(_one_step(comp, cond, kb, ms, action_guidance=3.0, guidance_rescale=0.0), g)
    assert torch.equal(_one_step(comp, cond, kb, ms, guidance_rescale=1.0), f)   # unguided: nothing to rescale
    # several steps: still two DiT passes per guided step (+ the context pass)
    calls = []
    hook = comp.dit.register_forward_hook(lambda *a: calls.append(1))
    try:
        ses = WorldSession(comp.dit, cond, seed=2, denoising_step_list=[1000, 500], action_guidance=2.0,
                           guidance_rescale=0.7)
        ses.step(torch.ones(9, 4), torch.full((9, 2), 0.1), decode=False)
        assert len(calls) == 5
    finally:
        hook.remove()
    # the model config's own value is used when the session does not set one
    comp.dit.cfg.guidance_rescale = 1.0
    try:
        assert WorldSession(comp.dit, cond).guidance_rescale == 1.0
        torch.testing.assert_close(_one_step(comp, cond, kb, ms, action_guidance=3.0), r1, atol=0, rtol=0)
    finally:
        comp.dit.cfg.guidance_rescale = 0.0
    # the helper itself, on a flow whose x0 has twice the std of the conditional one
    x, sig = torch.randn(1, 4, 2, 3, 3, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    x0c = torch.randn_like(x)
    out = rescale_flow((x - 2 * x0c) / sig, (x - x0c) / sig, x, sig, 1.0)
    torch.testing.assert_close(x - sig * out, x0c * 2 * (x0c.std() / (2 * x0c).std()))
    for bad in (-0.1, 1.5, float("nan"), "some"):
        with pytest.raises(MatrixGameError, match=r"guidance rescale must be a number from 0 to 1 \(0 = off"):
            WorldSession(comp.dit, cond, guidance_rescale=bad)
    with pytest.raises(MatrixGameError, match="guidance rescale must be a number from 0 to 1"):
        s.guidance_rescale = 2.0
    assert s.guidance_rescale == 0.0                                      # unchanged
