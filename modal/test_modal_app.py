"""Tests of modal_app.py: stdlib only, no Modal, FastAPI, torch or network (the Modal half runs on a stand-in).

Run from the repository root:  python3 -m unittest discover modal -v
or from inside modal/:          python3 -m unittest -v
"""

import base64
import contextlib
import fnmatch
import io
import importlib.util
import json
import os
import random
import struct
import sys
import threading
import types
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# Never let an import reach out to Modal for the HF secret, even where modal is installed.
os.environ.setdefault("GOONI_HF_SECRET", "")

import modal_app as m  # noqa: E402

# ---------------------------------------------------------------------------
# Real image files, written byte by byte (no Pillow here).
# ---------------------------------------------------------------------------


def segment(marker: int, body: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body


def tiff(orientation=None, order="MM", typ=3, count=1, entries=None) -> bytes:
    """A TIFF header and IFD0 holding an Orientation entry (plus `entries` before it)."""
    e = ">" if order == "MM" else "<"
    items = list(entries or [])
    if orientation is not None:
        items.append(struct.pack(e + "HHI", 0x0112, typ, count) + struct.pack(e + "HH", orientation, 0))
    ifd = struct.pack(e + "H", len(items)) + b"".join(items) + struct.pack(e + "I", 0)
    return order.encode() + struct.pack(e + "HI", 42, 8) + ifd


def jpeg(width: int, height: int, orientation=None, app1_first: bytes = b"") -> bytes:
    """A baseline greyscale JPEG that a JPEG decoder reads (libjpeg does: every block flat grey).

    One quantisation table, one DC and one AC Huffman table of a single 1-bit
    code each (DC category 0, AC end-of-block), so every 8x8 block is the two
    bits 00.
    """
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    bits = "00" * blocks
    bits += "1" * (-len(bits) % 8)
    scan = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")
    exif = segment(0xE1, b"Exif\x00\x00" + tiff(orientation)) if orientation is not None else b""
    return (b"\xff\xd8" + app1_first + exif
            + segment(0xDB, b"\x00" + b"\x01" * 64)
            + segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
            + segment(0xC4, b"\x00\x01" + b"\x00" * 15 + b"\x00")
            + segment(0xC4, b"\x10\x01" + b"\x00" * 15 + b"\x00")
            + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + scan + b"\xff\xd9")


def png_chunk(typ: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + typ + body + struct.pack(">I", zlib.crc32(typ + body) & 0xFFFFFFFF)


def png(width: int, height: int, orientation=None) -> bytes:
    """A valid greyscale PNG (zlib-compressed scanlines), optionally with an eXIf chunk."""
    raw = b"".join(b"\x00" + bytes(width) for _ in range(height))
    exif = png_chunk(b"eXIf", tiff(orientation)) if orientation is not None else b""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + exif + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def webp_chunk(typ: bytes, body: bytes) -> bytes:
    return typ + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def webp(width: int, height: int, orientation=None) -> bytes:
    """A WebP container: VP8X canvas, a VP8L header, an EXIF chunk (header parsing only)."""
    vp8l = b"\x2f" + ((width - 1) | (height - 1) << 14).to_bytes(4, "little") + b"\x00" * 4
    chunks = b""
    if orientation is not None:
        flags = 0x08
        chunks += webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
                             + (height - 1).to_bytes(3, "little"))
    chunks += webp_chunk(b"VP8L", vp8l)
    if orientation is not None:
        chunks += webp_chunk(b"EXIF", tiff(orientation, order="II"))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PORTRAIT_JPEG = jpeg(32, 24, orientation=6)  # stored 32x24 (4:3), a phone's portrait shot: upright 24x32
PNG = png(32, 24)
WEBP = webp(40, 20)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def go_client_statuses():
    """The task statuses the Go client's ParseTaskState accepts, read from its source."""
    import re
    path = os.path.join(REPO, "internal", "workspace", "client.go")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    consts = dict(re.findall(r'^\s*(Status\w+)\s*=\s*"([^"]*)"', src, re.M))
    fn = src.index("func ParseTaskState(")
    switch = src.index("switch *raw.Status {", fn)
    case = re.match(r"\s*case ([^:]+):", src[switch + len("switch *raw.Status {"):])
    if not case:
        raise AssertionError(f"{path}: no case list after 'switch *raw.Status' in ParseTaskState")
    names = [n.strip() for n in case.group(1).split(",")]
    missing = [n for n in names if n not in consts]
    if missing or not names:
        raise AssertionError(f"{path}: ParseTaskState accepts {names}, constants {consts}")
    return {consts[n] for n in names}


def body(**over):
    b = {
        "task_id": "t_1-A", "type": "image", "model": "flux", "mode": "t2i",
        "prompt": "a red fox in snow", "negative_prompt": "",
        "params": {"width": 1024, "height": 768, "steps": 20, "guidance": 3.5, "seed": 7},
    }
    b.update(over)
    return json.dumps(b).encode()


def video_body(**over):
    b = {
        "task_id": "vid1", "type": "video", "model": "anisora", "mode": "i2v",
        "prompt": "a cat dancing", "negative_prompt": "blurry", "image": b64(PORTRAIT_JPEG),
        "params": {"width": 832, "height": 480, "num_frames": 81, "fps": 16, "steps": 40, "guidance": 5, "seed": 1234},
    }
    b.update(over)
    return json.dumps(b).encode()


def t2v_body(**over):
    b = {
        "task_id": "vid2", "type": "video", "model": "anisora", "mode": "t2v",
        "prompt": "a cat dancing", "negative_prompt": "",
        "params": {"width": 480, "height": 832, "num_frames": 49, "fps": 16, "steps": 30, "guidance": 6, "seed": 99},
    }
    b.update(over)
    return json.dumps(b).encode()


class ApiErrorCase(unittest.TestCase):
    def assertApiError(self, status, code, fn, *args):
        with self.assertRaises(m.ApiError) as cm:
            fn(*args)
        self.assertEqual((cm.exception.status, cm.exception.code), (status, code), cm.exception.message)
        self.assertEqual(cm.exception.body(), {"error": code, "message": cm.exception.message})
        return cm.exception


class ImportTest(unittest.TestCase):
    def test_pure_half_imports_without_modal(self):
        # The deploy machine has modal; CI does not. Either way the logic is reachable.
        self.assertTrue(callable(m.parse_submission))
        if m.modal is None:
            self.assertFalse(hasattr(m, "app"))

    def test_names_the_deploy_output_is_read_by(self):
        # internal/dispatch DeployURL picks "Created web function web => https://...--gooni-inference.modal.run".
        self.assertEqual((m.WEB_FUNCTION, m.WEB_LABEL, m.APP_NAME), ("web", "gooni-inference", "gooni-inference"))


CATALOG = os.path.join(HERE, os.pardir, "inference_settings.json")  # the single source of truth
ENTRIES = os.path.join(HERE, "catalog_entries.json")


def load_models(path):
    with open(path, encoding="utf-8") as f:
        return {e["id"]: e for e in json.load(f)["models"]}


def app_entry(mid):
    """What the app accepts for a model, in the catalog's terms."""
    spec = m.MODELS[mid]
    return {
        "type": spec["type"], "modes": list(spec["modes"]), "label": spec["label"],
        "negative_prompt": spec.get("negative_prompt", True),
        "params": [{"name": name, "kind": p["kind"], "min": p["min"], "max": p["max"],
                    "default": p["default"], "step": p["step"]} for name, p in spec["params"].items()],
    }


def catalog_view(e):
    """A catalog entry reduced to what app_entry says (labels of params are the UI's business)."""
    return {
        "type": e["type"], "modes": list(e["modes"]), "label": e["label"], "negative_prompt": e["negative_prompt"],
        "params": [{"name": p["name"], "kind": p["kind"], "min": p["min"], "max": p["max"],
                    "default": p["default"], "step": p.get("step")} for p in e["params"]],
    }


def submission(mid, mode, params=None, **over):
    """A raw POST /tasks body for a model and mode of the catalog."""
    raw = {"task_id": "cat1", "type": m.MODELS[mid]["type"] if mid in m.MODELS else "video",
           "model": mid, "mode": mode, "prompt": "a fox", "params": params or {}}
    if mode == "i2v":
        raw["image"] = b64(PNG)
    raw.update(over)
    return json.dumps(raw).encode()


class CatalogTest(ApiErrorCase):
    """The app accepts exactly what inference_settings.json declares for the models it serves.

    catalog_entries.json is this directory's copy of those entries; both must
    agree with the app. Run from the repository root or from modal/: the paths
    are taken from this file's location.
    """

    @classmethod
    def setUpClass(cls):
        cls.catalog = load_models(CATALOG)
        cls.entries = load_models(ENTRIES)

    def test_served_models_are_catalog_models(self):
        self.assertLessEqual(set(m.MODELS), set(self.catalog))
        self.assertEqual(set(m.MODELS), {"anisora", "pony", "flux"})
        self.assertNotIn("phr00t", m.MODELS)  # served by the ComfyUI driver, see MODELS' comment

    def test_entries_copy_the_catalog(self):
        self.assertEqual(set(self.entries), set(m.MODELS))
        for mid, e in self.entries.items():
            self.assertEqual(e, self.catalog[mid], mid)

    def test_models_modes_and_bounds_equal_the_catalog(self):
        for mid in m.MODELS:
            with self.subTest(model=mid):
                self.assertEqual(app_entry(mid), catalog_view(self.catalog[mid]))
        # anisora keeps both modes: i2v on AniSora's weights, t2v on the Wan 2.1 T2V base.
        self.assertEqual(self.catalog["anisora"]["modes"], ["i2v", "t2v"])
        self.assertIn("Wan 2.1 T2V", self.catalog["anisora"]["label"])

    def test_every_value_the_catalog_allows_is_accepted_and_nothing_else(self):
        rng = random.Random(5)
        for mid in m.MODELS:
            e = self.catalog[mid]
            for mode in e["modes"]:
                for p in e["params"]:
                    lo, hi, step = p["min"], p["max"], p.get("step")
                    if p["kind"] == "float":
                        good = [lo, hi, (lo + hi) / 2]
                        bad = [lo - 0.5, hi + 0.5]
                    else:
                        n = (hi - lo) // (step or 1)  # grid points after lo
                        good = [lo, lo + n * (step or 1)] + [lo + rng.randint(0, n) * (step or 1) for _ in range(5)]
                        bad = [lo - (step or 1), hi + (step or 1)] + ([lo + 1] if step and step > 1 else [])
                    for v in good:
                        with self.subTest(model=mid, mode=mode, param=p["name"], value=v):
                            try:
                                sub = m.parse_submission(submission(mid, mode, {p["name"]: v}))
                            except m.ApiError as e:
                                self.fail(f"refused what the catalog allows: {e.message}")
                            self.assertEqual((sub["model"], sub["mode"]), (mid, mode))
                            self.assertEqual(sub["params"][p["name"]], v)
                    for v in bad:
                        with self.subTest(model=mid, mode=mode, param=p["name"], value=v, bad=True):
                            self.assertApiError(400, "invalid_params", m.parse_submission,
                                                submission(mid, mode, {p["name"]: v}))

    def test_defaults_are_the_catalog_defaults(self):
        for mid in m.MODELS:
            for mode in self.catalog[mid]["modes"]:
                with self.subTest(model=mid, mode=mode):
                    sub = m.parse_submission(submission(mid, mode))
                    self.assertEqual(sub["params"], {p["name"]: p["default"] for p in self.catalog[mid]["params"]})

    def test_modes_outside_the_catalog_are_refused(self):
        for mid in m.MODELS:
            for mode in ("t2v", "i2v", "t2i", "v2v"):
                if mode in self.catalog[mid]["modes"]:
                    continue
                with self.subTest(model=mid, mode=mode):
                    self.assertApiError(400, "invalid_mode", m.parse_submission, submission(mid, mode))

    def test_every_catalog_mode_has_a_runner(self):
        for mid in m.MODELS:
            for mode in self.catalog[mid]["modes"]:
                key = m.runner_for(mid, mode)
                for table in (m.WEIGHTS, m.RESOURCES, m.CONVERSION_VERSION):
                    self.assertIn(key, table, (mid, mode))

    def test_bounds_say_what_the_models_do(self):
        by = {p["name"]: p for p in self.catalog["anisora"]["params"]}
        self.assertEqual((by["fps"]["min"], by["fps"]["max"]), (16, 16))  # Wan's native rate, not a speed knob
        self.assertEqual((by["num_frames"]["min"] - 1) % 4, 0)  # F = 4k+1: Wan's VAE compresses time by 4
        self.assertEqual(by["num_frames"]["step"] % 4, 0)
        for side in ("width", "height"):  # VAE x8, patch x2: WanPipeline refuses sides off the 16 grid
            self.assertEqual(by[side]["step"] % 16, 0)
            self.assertEqual(by[side]["min"] % 16, 0)
        for mid in m.MODELS:
            e = self.catalog[mid]
            for p in e["params"]:
                if p.get("step"):
                    self.assertEqual((p["default"] - p["min"]) % p["step"], 0, (mid, p["name"]))
                self.assertLessEqual(p["min"], p["default"])
                self.assertLessEqual(p["default"], p["max"])
        self.assertFalse(self.catalog["flux"]["negative_prompt"])


class RunnerTest(unittest.TestCase):
    def test_each_model_and_mode_has_its_runner(self):
        self.assertEqual(m.runner_for("anisora", "i2v"), "anisora")
        self.assertEqual(m.runner_for("anisora", "t2v"), "wan21-t2v")
        self.assertEqual(m.runner_for("pony", "t2i"), "pony")
        self.assertEqual(m.runner_for("flux", "t2i"), "flux")
        for pair in [("anisora", "t2i"), ("pony", "t2v"), ("phr00t", "t2v")]:
            with self.assertRaises(KeyError):
                m.runner_for(*pair)

    def test_runners_of_a_model_and_back(self):
        self.assertEqual(m.runners_of("anisora"), ["anisora", "wan21-t2v"])
        self.assertEqual(m.runners_of("flux"), ["flux"])
        for key in m.RUNNER_KEYS:
            self.assertIn(key, m.runners_of(m.runner_model(key)))
        self.assertEqual(m.runner_model("wan21-t2v"), "anisora")

    def test_tables_cover_exactly_the_runners(self):
        keys = set(m.RUNNER_KEYS)
        self.assertEqual(keys, {"anisora", "wan21-t2v", "pony", "flux"})
        self.assertEqual(set(m.WEIGHTS), keys)
        self.assertEqual(set(m.RESOURCES), keys)
        self.assertEqual(set(m.CONVERSION_VERSION), keys)

    def test_t2v_runs_the_wan_base_on_an_h100(self):
        self.assertEqual(m.RESOURCES["wan21-t2v"]["gpu"], "H100")
        [spec] = m.WEIGHTS["wan21-t2v"]
        self.assertEqual(spec["repo"], "Wan-AI/Wan2.1-T2V-14B-Diffusers")
        # Every file WanPipeline.from_pretrained reads is taken, and nothing from AniSora.
        needed = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/spiece.model",
                  "tokenizer/tokenizer_config.json", "text_encoder/config.json",
                  "text_encoder/model-00001-of-00005.safetensors", "transformer/config.json",
                  "transformer/diffusion_pytorch_model-00001-of-00012.safetensors",
                  "transformer/diffusion_pytorch_model.safetensors.index.json",
                  "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]
        for name in needed:
            self.assertTrue(any(fnmatch.fnmatchcase(name, pat) for pat in spec["allow"]), name)
        self.assertFalse(any(fnmatch.fnmatchcase("README.md", pat) for pat in spec["allow"]))


class TaskIdTest(ApiErrorCase):
    def test_pattern(self):
        for good in ["a", "A-b_9", "x" * 64, "0192f1c2-7d3e-7abc-8def-0123456789ab"]:
            self.assertEqual(m.check_task_id(good), good)
        for bad in ["", "x" * 65, "a/b", "a.b", "../x", "a b", "é", None, 12, "a\n"]:
            self.assertApiError(400, "invalid_task_id", m.check_task_id, bad)


class ParseSubmissionTest(ApiErrorCase):
    def test_image_task(self):
        sub = m.parse_submission(body())
        self.assertEqual(sub["task_id"], "t_1-A")
        self.assertEqual((sub["type"], sub["model"], sub["mode"]), ("image", "flux", "t2i"))
        self.assertEqual((sub["params"]["width"], sub["params"]["height"], sub["params"]["steps"]), (1024, 768, 20))
        self.assertEqual(sub["params"]["seed"], 7)
        self.assertIsNone(sub["image"])

    def test_defaults_fill_omitted_params_and_unknown_names_are_ignored(self):
        sub = m.parse_submission(body(params={"future_knob": 3}))
        self.assertEqual(sub["params"], {"width": 1024, "height": 1024, "steps": 28, "guidance": 3.5, "seed": -1})
        self.assertEqual(m.parse_submission(body(params=None))["params"]["steps"], 28)
        sub = m.parse_submission(video_body(params={}))
        self.assertEqual(sub["params"], {"width": 832, "height": 480, "num_frames": 81, "fps": 16,
                                         "steps": 40, "guidance": 5, "seed": -1})

    def test_i2v_takes_png_jpeg_webp_as_base64_and_data_urls(self):
        for img, fmt in [(PNG, "png"), (PORTRAIT_JPEG, "jpeg"), (WEBP, "webp")]:
            for enc in [b64(img), "data:image/png;base64," + b64(img), base64.urlsafe_b64encode(img).decode().rstrip("=")]:
                with self.subTest(fmt=fmt, enc=enc[:12]):
                    sub = m.parse_submission(video_body(image=enc))
                    self.assertEqual(sub["image"], img)
                    self.assertEqual(sub["image_info"]["format"], fmt)

    def test_integral_floats_pass_as_ints(self):
        sub = m.parse_submission(body(params={"width": 512.0}))
        self.assertEqual(sub["params"]["width"], 512)
        self.assertIsInstance(sub["params"]["width"], int)

    def test_t2v_task(self):
        sub = m.parse_submission(t2v_body())
        self.assertEqual((sub["type"], sub["model"], sub["mode"]), ("video", "anisora", "t2v"))
        self.assertEqual(sub["params"], {"width": 480, "height": 832, "num_frames": 49, "fps": 16,
                                         "steps": 30, "guidance": 6.0, "seed": 99})
        self.assertIsNone(sub["image"])
        self.assertIsNone(sub["image_info"])
        # t2v needs no image; one sent anyway is not decoded, checked or kept.
        sub = m.parse_submission(t2v_body(image="!!! not base64"))
        self.assertIsNone(sub["image"])
        # 4k+1 frames that AniSora's own grid (8k+1) would not have: the catalog allows them.
        self.assertEqual(m.parse_submission(t2v_body(params={"num_frames": 77}))["params"]["num_frames"], 77)
        self.assertEqual(m.parse_submission(video_body(params={"num_frames": 77}))["params"]["num_frames"], 77)

    def test_t2v_refusals(self):
        cases = [
            ("image type", t2v_body(type="image"), 400, "invalid_type"),
            ("mode not in the catalog", t2v_body(mode="v2v"), 400, "invalid_mode"),
            ("mode not a string", t2v_body(mode=["t2v"]), 400, "invalid_mode"),
            ("empty prompt", t2v_body(prompt=""), 400, "invalid_prompt"),
            ("prompt too long", t2v_body(prompt="x" * (m.MAX_PROMPT + 1)), 400, "invalid_prompt"),
            ("width over 832", t2v_body(params={"width": 848}), 400, "invalid_params"),
            ("720P is not in the catalog", t2v_body(params={"width": 1280, "height": 720}), 400, "invalid_params"),
            ("height under 256", t2v_body(params={"height": 240}), 400, "invalid_params"),
            ("width off the 16 grid", t2v_body(params={"width": 840}), 400, "invalid_params"),
            ("frames not 4k+1", t2v_body(params={"num_frames": 80}), 400, "invalid_params"),
            ("frames over 81", t2v_body(params={"num_frames": 85}), 400, "invalid_params"),
            ("frames under 17", t2v_body(params={"num_frames": 13}), 400, "invalid_params"),
            ("fps other than 16", t2v_body(params={"fps": 24}), 400, "invalid_params"),
            ("steps over 50", t2v_body(params={"steps": 51}), 400, "invalid_params"),
            ("steps zero", t2v_body(params={"steps": 0}), 400, "invalid_params"),
            ("guidance over 10", t2v_body(params={"guidance": 10.5}), 400, "invalid_params"),
            ("guidance under 1", t2v_body(params={"guidance": 0.5}), 400, "invalid_params"),
            ("seed too big", t2v_body(params={"seed": 2**31}), 400, "invalid_params"),
        ]
        for name, raw, status, code in cases:
            with self.subTest(name):
                self.assertApiError(status, code, m.parse_submission, raw)

    def test_refusals(self):
        big = b'{"task_id":"a","pad":"' + b"x" * m.MAX_BODY + b'"}'
        huge = jpeg(8200, 16)
        nested = b"[" * 100000 + b"]" * 100000
        cases = [
            ("not json", b"{nope", 400, "invalid_json"),
            ("array", b"[]", 400, "invalid_json"),
            ("null", b"null", 400, "invalid_json"),
            ("bad utf8", b"\xff\xfe", 400, "invalid_json"),
            ("deeply nested", nested, 400, "invalid_json"),
            ("too large", big, 413, "too_large"),
            ("no id", body(task_id=None), 400, "invalid_task_id"),
            ("id with slash", body(task_id="a/b"), 400, "invalid_task_id"),
            ("bad type", body(type="audio"), 400, "invalid_type"),
            ("type mismatch", body(type="video"), 400, "invalid_type"),
            ("unknown model", body(model="sdxl"), 400, "invalid_model"),
            ("model not a string", body(model=["flux"]), 400, "invalid_model"),
            ("phr00t is not served here", video_body(model="phr00t"), 400, "invalid_model"),
            ("anisora has no t2i", video_body(mode="t2i"), 400, "invalid_mode"),
            ("bad mode", body(mode="i2v"), 400, "invalid_mode"),
            ("empty prompt", body(prompt="  "), 400, "invalid_prompt"),
            ("prompt not string", body(prompt=5), 400, "invalid_prompt"),
            ("prompt too long", body(prompt="x" * (m.MAX_PROMPT + 1)), 400, "invalid_prompt"),
            ("negative not string", body(negative_prompt=["x"]), 400, "invalid_prompt"),
            ("flux takes no negative", body(negative_prompt="blurry"), 400, "invalid_prompt"),
            ("params not object", body(params=[1]), 400, "invalid_params"),
            ("param string", body(params={"width": "512"}), 400, "invalid_params"),
            ("param bool", body(params={"steps": True}), 400, "invalid_params"),
            ("param fraction", body(params={"steps": 2.5}), 400, "invalid_params"),
            ("param too big", body(params={"width": 4096}), 400, "invalid_params"),
            ("param huge int", b'{"task_id":"a","type":"image","model":"flux","mode":"t2i","prompt":"p","params":{"width":1' + b"0" * 400 + b"}}", 400, "invalid_params"),
            ("param NaN", b'{"task_id":"a","type":"image","model":"flux","mode":"t2i","prompt":"p","params":{"guidance":NaN}}', 400, "invalid_params"),
            ("param Infinity", b'{"task_id":"a","type":"image","model":"flux","mode":"t2i","prompt":"p","params":{"guidance":Infinity}}', 400, "invalid_params"),
            ("width off the 16 grid", body(params={"width": 1000}), 400, "invalid_params"),
            ("frames not 4k+1", video_body(params={"num_frames": 79}), 400, "invalid_params"),
            ("fps other than native", video_body(params={"fps": 24}), 400, "invalid_params"),
            ("anisora past 480P", video_body(params={"width": 1280}), 400, "invalid_params"),
            ("i2v without image", video_body(image=None), 400, "invalid_image"),
            ("i2v bad base64", video_body(image="!!!"), 400, "invalid_image"),
            ("i2v not an image", video_body(image=b64(b"GIF89a" + bytes(40))), 400, "invalid_image"),
            ("i2v truncated jpeg", video_body(image=b64(PORTRAIT_JPEG[:30])), 400, "invalid_image"),
            ("i2v jpeg without frame", video_body(image=b64(b"\xff\xd8\xff\xd9")), 400, "invalid_image"),
            ("i2v too large", video_body(image=b64(huge)), 400, "invalid_image"),
            ("i2v too small", video_body(image=b64(png(4, 4))), 400, "invalid_image"),
            ("i2v png without IHDR", video_body(image=b64(b"\x89PNG\r\n\x1a\n" + bytes(30))), 400, "invalid_image"),
        ]
        for name, raw, status, code in cases:
            with self.subTest(name):
                self.assertApiError(status, code, m.parse_submission, raw)


class SeedTest(ApiErrorCase):
    def test_resolved_seeds_pass_through_unchanged(self):
        # The Gooni server now always sends a resolved seed in 0..2147483647.
        for seed in (0, 1, 7, 2147483647):
            sub = m.parse_submission(body(params={"seed": seed}))
            self.assertEqual(sub["params"]["seed"], seed)
            self.assertEqual(m.resolve_seed(sub["params"]["seed"]), seed)
        self.assertEqual(m.parse_submission(body(params={"seed": 42.0}))["params"]["seed"], 42)

    def test_minus_one_and_missing_still_pick_one_in_range(self):
        for params in ({"seed": -1}, {}, {"seed": None}):
            self.assertEqual(m.parse_submission(body(params=params))["params"]["seed"], -1)
        rng = random.Random(1)
        seeds = [m.resolve_seed(-1, rng) for _ in range(200)]
        self.assertTrue(all(0 <= s <= m.SEED_MAX for s in seeds))
        self.assertGreater(len(set(seeds)), 190)
        self.assertEqual(m.resolve_seed(-1, random.Random(9)), m.resolve_seed(None, random.Random(9)))

    def test_out_of_range_seeds_are_refused(self):
        for seed in (-2, 2147483648, 2**63, 1.5):
            self.assertApiError(400, "invalid_params", m.parse_submission, body(params={"seed": seed}))


# Pillow's Image.Transpose operations on a grid of rows, as Pillow defines them
# (checked against Pillow 9.4 when this was written: see the commit message).
def pil_transpose(grid, op):
    h, w = len(grid), len(grid[0])
    if op == "FLIP_LEFT_RIGHT":
        return [[grid[y][w - 1 - x] for x in range(w)] for y in range(h)]
    if op == "FLIP_TOP_BOTTOM":
        return [[grid[h - 1 - y][x] for x in range(w)] for y in range(h)]
    if op == "ROTATE_180":
        return [[grid[h - 1 - y][w - 1 - x] for x in range(w)] for y in range(h)]
    if op == "ROTATE_90":  # counter-clockwise
        return [[grid[x][w - 1 - y] for x in range(h)] for y in range(w)]
    if op == "ROTATE_270":  # clockwise
        return [[grid[h - 1 - x][y] for x in range(h)] for y in range(w)]
    if op == "TRANSPOSE":
        return [[grid[x][y] for x in range(h)] for y in range(w)]
    if op == "TRANSVERSE":
        return [[grid[h - 1 - x][w - 1 - y] for x in range(h)] for y in range(w)]
    raise ValueError(op)


def stored_from_upright(up, orientation):
    """How a camera stores an upright picture under each EXIF orientation (Exif 2.3, tag 0x0112):
    the side of the picture that the stored 0th row and 0th column show."""
    h, w = len(up), len(up[0])
    if orientation == 1:  # row 0 top, column 0 left
        return [row[:] for row in up]
    if orientation == 2:  # top, right
        return [row[::-1] for row in up]
    if orientation == 3:  # bottom, right
        return [row[::-1] for row in up[::-1]]
    if orientation == 4:  # bottom, left
        return [row[:] for row in up[::-1]]
    if orientation == 5:  # left, top
        return [[up[c][r] for c in range(h)] for r in range(w)]
    if orientation == 6:  # right, top: stored row r is upright column w-1-r, read top to bottom
        return [[up[c][w - 1 - r] for c in range(h)] for r in range(w)]
    if orientation == 7:  # right, bottom
        return [[up[h - 1 - c][w - 1 - r] for c in range(h)] for r in range(w)]
    if orientation == 8:  # left, bottom
        return [[up[h - 1 - c][r] for c in range(h)] for r in range(w)]
    raise ValueError(orientation)


class ExifTest(ApiErrorCase):
    def test_phone_portrait_jpeg_is_read_as_orientation_6(self):
        info = m.image_info(PORTRAIT_JPEG)
        self.assertEqual(info, {"format": "jpeg", "width": 32, "height": 24, "orientation": 6})
        self.assertEqual(m.upright_size(info["width"], info["height"], info["orientation"]), (24, 32))
        self.assertEqual(m.ORIENTATION_TRANSPOSE[6], "ROTATE_270")  # 90 degrees clockwise
        # Reaches the GPU job with the request.
        sub = m.parse_submission(video_body())
        self.assertEqual(sub["image_info"]["orientation"], 6)

    def test_transpose_table_makes_every_orientation_upright(self):
        upright = [[(y, x) for x in range(5)] for y in range(3)]  # 5 wide, 3 high, every pixel distinct
        for n in range(1, 9):
            stored = stored_from_upright(upright, n)
            op = m.ORIENTATION_TRANSPOSE.get(n)
            fixed = pil_transpose(stored, op) if op else stored
            self.assertEqual(fixed, upright, n)
            self.assertEqual(m.upright_size(len(stored[0]), len(stored), n), (5, 3), n)

    def test_orientation_6_turns_the_top_left_pixel_to_the_top_right(self):
        stored = [["a", "b", "c"], ["d", "e", "f"]]  # as the sensor stored it
        self.assertEqual(pil_transpose(stored, m.ORIENTATION_TRANSPOSE[6]), [["d", "a"], ["e", "b"], ["f", "c"]])

    def test_exif_in_every_container_and_byte_order(self):
        xmp = segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x/>")
        cases = [
            ("jpeg big-endian", jpeg(16, 16, 8), 8),
            ("jpeg after an XMP APP1", jpeg(16, 16, 3, app1_first=xmp), 3),
            ("jpeg without exif", jpeg(16, 16), 1),
            ("png eXIf", png(20, 16, 5), 5),
            ("png without exif", png(20, 16), 1),
            ("webp EXIF little-endian", webp(20, 16, 7), 7),
            ("webp without exif", webp(20, 16), 1),
        ]
        for name, data, want in cases:
            with self.subTest(name):
                self.assertEqual(m.image_info(data)["orientation"], want)

    def test_sizes_from_headers(self):
        self.assertEqual(m.image_info(png(33, 17)), {"format": "png", "width": 33, "height": 17, "orientation": 1})
        self.assertEqual(m.image_info(webp(300, 200))["width"], 300)
        self.assertEqual(m.image_info(webp(300, 200, 1))["height"], 200)
        self.assertEqual(m.image_info(jpeg(640, 480))["width"], 640)

    def test_malformed_exif_reads_as_upright(self):
        e = struct.pack(">HHI", 0x010F, 2, 4) + b"Cam\x00"  # an unrelated Make entry before it
        cases = [
            ("value out of range", tiff(9), 1),
            ("not a SHORT", tiff(6, typ=4), 1),
            ("two values", tiff(6, count=2), 1),
            ("after another entry", tiff(6, entries=[e]), 6),
            ("bad byte order", b"XX" + tiff(6)[2:], 1),
            ("bad magic", tiff(6)[:2] + b"\x00\x2b" + tiff(6)[4:], 1),
            ("IFD past the end", tiff(6)[:4] + struct.pack(">I", 10**6), 1),
            ("truncated entry", tiff(6)[:14], 1),
            ("empty", b"", 1),
            ("hostile count", b"MM\x00\x2a\x00\x00\x00\x08\xff\xff", 1),
        ]
        for name, t, want in cases:
            with self.subTest(name):
                self.assertEqual(m.tiff_orientation(t), want)

    def test_hostile_headers_are_refused_cleanly(self):
        # Damaged files (flipped bytes, cut short, runs of 0xff, inserted bytes) either
        # parse or get a 400: never another exception, never a long loop.
        rng = random.Random(13)
        seeds = [PORTRAIT_JPEG, png(40, 30, 6), webp(40, 30, 6), webp(40, 30), jpeg(64, 48, 3)]
        for _ in range(5000):
            d = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 6)):
                if not d:
                    break
                k, at = rng.random(), rng.randrange(len(d))
                if k < 0.5:
                    d[at] = rng.randrange(256)
                elif k < 0.7:
                    del d[at:]
                elif k < 0.85:
                    d[at:at + rng.randint(0, 4)] = b"\xff" * rng.randint(0, 8)
                else:
                    d.insert(at, rng.randrange(256))
            try:
                info = m.image_info(bytes(d))
            except m.ApiError as e:
                self.assertEqual((e.status, e.code), (400, "invalid_image"))
            else:
                self.assertTrue(1 <= info["orientation"] <= 8)
                self.assertLessEqual(info["width"] * info["height"], m.MAX_IMAGE_PIXELS)

    def test_cover_crop_keeps_proportions(self):
        # An upright 1080x1920 portrait into an 832x480 frame: a centred band of the frame's aspect.
        left, top, right, bottom = m.cover_crop(1080, 1920, 832, 480)
        self.assertEqual((left, right), (0, 1080))
        self.assertAlmostEqual((right - left) / (bottom - top), 832 / 480, places=2)
        self.assertLessEqual(abs(top - (1920 - bottom)), 1)  # centred
        # A wide picture into a portrait frame trims the sides.
        left, top, right, bottom = m.cover_crop(1920, 1080, 480, 832)
        self.assertEqual((top, bottom), (0, 1080))
        self.assertAlmostEqual((right - left) / 1080, 480 / 832, places=2)
        self.assertEqual(m.cover_crop(832, 480, 832, 480), (0, 0, 832, 480))


class FakeStore:
    """An in-memory stand-in for modal.Dict with its atomic put-if-absent, counting calls."""

    def __init__(self):
        self.d = {}
        self.mu = threading.Lock()
        self.calls = 0

    def put_if_absent(self, key, value):
        with self.mu:
            self.calls += 1
            if key in self.d:
                return False
            self.d[key] = value
            return True

    def get(self, key):
        with self.mu:
            self.calls += 1
            return self.d.get(key)

    def pop(self, key):
        with self.mu:
            self.calls += 1
            return self.d.pop(key, None)

    def count(self):
        with self.mu:
            self.calls += 1
            return len(self.d)


class CapacityTest(unittest.TestCase):
    def test_claims_up_to_capacity_then_busy(self):
        slots = m.Slots(FakeStore(), 3)
        got = [slots.claim(f"t{i}") for i in range(3)]
        self.assertEqual(sorted(got), [0, 1, 2])
        self.assertIsNone(slots.claim("t3"))
        self.assertEqual(slots.running(), 3)
        self.assertTrue(slots.release("t1", got[1]))
        self.assertEqual(slots.running(), 2)
        self.assertEqual(slots.claim("t3"), got[1])

    def test_release_frees_only_the_holders_slot_and_repeats_are_harmless(self):
        slots = m.Slots(FakeStore(), 2)
        a = slots.claim("a")
        self.assertTrue(slots.release("a", a))
        b = slots.claim("b")  # b now holds a's old slot
        self.assertEqual(a, b)
        self.assertFalse(slots.release("a", a))  # a late, repeated release of a's slot
        self.assertEqual(slots.holders(), {b: "b"})
        self.assertFalse(slots.release("b", None))
        self.assertFalse(slots.release("b", 7))
        self.assertEqual(slots.running(), 1)

    def test_a_slot_that_changes_hands_during_release_is_put_back(self):
        class Racy(FakeStore):
            def pop(self, key):  # another task claimed the slot between release's read and its pop
                held = super().pop(key)
                self.d[key] = "other"
                return super().pop(key) if held == "a" else held

        store = Racy()
        slots = m.Slots(store, 1)
        self.assertEqual(slots.claim("a"), 0)
        self.assertFalse(slots.release("a", 0))
        self.assertEqual(slots.holders(), {0: "other"})

    def test_concurrent_claims_never_exceed_capacity(self):
        store = FakeStore()
        slots = m.Slots(store, 4)
        start = threading.Barrier(32)
        won = {}

        def worker(i):
            start.wait()
            s = slots.claim(f"t{i}")
            if s is not None:
                won[f"t{i}"] = s

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(won), 4)
        self.assertEqual(sorted(won.values()), [0, 1, 2, 3])
        self.assertEqual(store.count(), 4)

    def test_two_processes_sharing_a_store_never_share_a_slot(self):
        # Separate Slots objects (separate locks) over one store: the store's atomic put decides.
        store = FakeStore()
        a, b = m.Slots(store, 2), m.Slots(store, 2)
        got = [a.claim("x"), b.claim("y"), a.claim("z"), b.claim("w")]
        self.assertEqual(got[:2], [0, 1])
        self.assertEqual(got[2:], [None, None])

    def test_counting_and_admission_cost_do_not_grow_with_tasks(self):
        store = FakeStore()
        slots = m.Slots(store, 4)
        for i in range(4):
            slots.claim(f"old{i}")
        store.calls = 0
        self.assertEqual(slots.running(), 4)
        self.assertEqual(store.calls, 1)  # one call, however many tasks were ever seen
        store.calls = 0
        decision, slot = m.admit("new", None, slots, reclaim=lambda: None)
        self.assertEqual((decision, slot), ("busy", None))
        self.assertLessEqual(store.calls, 2 * 4)  # two claim rounds of `capacity` puts

    def test_admit(self):
        slots = m.Slots(FakeStore(), 1)
        reclaimed = []
        self.assertEqual(m.admit("a", None, slots, lambda: reclaimed.append(1)), ("start", 0))
        self.assertEqual(reclaimed, [])  # a free slot: no reclaim
        # A known id answers as the first time, even when the workspace is full.
        self.assertEqual(m.admit("a", {"status": "done"}, slots, lambda: reclaimed.append(1)), ("repeat", None))
        self.assertEqual(m.admit("b", None, slots, lambda: reclaimed.append(1)), ("busy", None))
        self.assertEqual(reclaimed, [1])

        def reclaim():  # a finished task's slot comes back
            for s, tid in m.stale_slots(slots.holders(), {"a": {"status": "done"}}):
                slots.release(tid, s)

        self.assertEqual(m.admit("b", None, slots, reclaim), ("start", 0))

    def test_stale_slots(self):
        holders = {0: "run", 1: "done", 2: "gone", 3: "queued", 4: "failed"}
        records = {"run": {"status": "processing"}, "done": {"status": "done"}, "gone": None,
                   "queued": {"status": "pending"}, "failed": {"status": "failed"}}
        self.assertEqual(m.stale_slots(holders, records), [(1, "done"), (2, "gone"), (4, "failed")])

    def test_dict_store_adapter(self):
        class Dict:  # the modal.Dict methods DictStore calls
            def __init__(self):
                self.d = {}

            def put(self, k, v, skip_if_exists=False):
                if skip_if_exists and k in self.d:
                    return False
                self.d[k] = v
                return True

            def get(self, k, default=None):
                return self.d.get(k, default)

            def pop(self, k, default):
                return self.d.pop(k, default)

            def len(self):
                return len(self.d)

        slots = m.Slots(m.DictStore(Dict()), 2)
        self.assertEqual([slots.claim("a"), slots.claim("b"), slots.claim("c")], [0, 1, None])
        self.assertTrue(slots.release("a", 0))
        self.assertEqual(slots.running(), 1)


class ModelListingTest(unittest.TestCase):
    def ready(self, *keys):
        return {key: m.weights_fingerprint(key) for key in keys}

    def test_with_and_without_a_token(self):
        everything = self.ready(*m.RUNNER_KEYS)
        self.assertEqual(m.served_models(everything, True), ["anisora", "pony", "flux"])
        self.assertEqual(m.served_models(everything, False), ["anisora", "pony"])  # FLUX.1-dev is gated

    def test_only_downloaded_weights_at_the_pinned_revisions(self):
        self.assertEqual(m.served_models(None, True), [])
        self.assertEqual(m.served_models({}, True), [])
        self.assertEqual(m.served_models("junk", True), [])
        self.assertEqual(m.served_models(self.ready("pony"), True), ["pony"])
        stale = dict(self.ready("anisora", "wan21-t2v", "pony"), anisora="0123456789abcdef")
        self.assertEqual(m.served_models(stale, True), ["pony"])

    def test_anisora_is_listed_only_with_both_modes_ready(self):
        # Routing is by model: listing anisora sends it t2v tasks too, so the Wan base must be there.
        self.assertEqual(m.served_models(self.ready("anisora", "pony"), True), ["pony"])  # i2v only
        self.assertEqual(m.served_models(self.ready("wan21-t2v"), True), [])  # t2v only
        self.assertEqual(m.served_models(self.ready("anisora", "wan21-t2v"), True), ["anisora"])
        stale = dict(self.ready("anisora"), **{"wan21-t2v": "0123456789abcdef"})
        self.assertEqual(m.served_models(stale, True), [])

    def test_fingerprints_differ_by_runner(self):
        prints = [m.weights_fingerprint(key) for key in m.RUNNER_KEYS]
        self.assertEqual(len(set(prints)), len(prints))
        self.assertTrue(all(len(p) == 16 for p in prints))

    def test_fingerprint_follows_the_pins(self):
        before = m.weights_fingerprint("flux")
        saved = m.WEIGHTS["flux"]
        try:
            m.WEIGHTS["flux"] = [dict(saved[0], revision="0" * 40)]
            self.assertNotEqual(m.weights_fingerprint("flux"), before)
        finally:
            m.WEIGHTS["flux"] = saved
        self.assertEqual(m.weights_fingerprint("flux"), before)

    def test_every_repository_is_pinned(self):
        for key in m.RUNNER_KEYS:
            self.assertTrue(m.WEIGHTS[key], key)
            for spec in m.WEIGHTS[key]:
                with self.subTest(repo=spec["repo"]):
                    self.assertTrue(spec["allow"])
                    commit = len(spec["revision"]) == 40 and all(c in "0123456789abcdef" for c in spec["revision"])
                    # A branch is allowed only where every file taken is pinned by content.
                    if not commit:
                        self.assertEqual(sorted(spec.get("sha256", {})), sorted(spec["allow"]))
                        for digest in spec["sha256"].values():
                            self.assertEqual(len(digest), 64)

    def test_download_plan(self):
        self.assertEqual(m.download_plan("", True), (["anisora", "pony", "flux"], []))
        todo, skipped = m.download_plan("", False)
        self.assertEqual(todo, ["anisora", "pony"])
        self.assertEqual([s[0] for s in skipped], ["flux"])
        self.assertIn("HF_TOKEN", skipped[0][1])
        self.assertEqual(m.download_plan(" pony, pony ,anisora", False), (["pony", "anisora"], []))
        with self.assertRaises(ValueError) as cm:
            m.download_plan("pony,phr00t", True)
        self.assertIn("phr00t", str(cm.exception))


class PipelinePlanTest(unittest.TestCase):
    def test_flux(self):
        plan = m.pipeline_plan(m.parse_submission(body()))
        self.assertEqual(plan, {"model": "flux", "runner": "flux", "fps": None, "kwargs": {
            "prompt": "a red fox in snow", "width": 1024, "height": 768,
            "num_inference_steps": 20, "guidance_scale": 3.5, "max_sequence_length": 512,
        }})

    def test_pony_gets_its_score_prefix_once_and_no_clip_skip(self):
        sub = m.parse_submission(body(model="pony", negative_prompt="lowres", params={"guidance": 6}))
        kw = m.pipeline_plan(sub)["kwargs"]
        self.assertEqual(kw["prompt"], m.PONY_PREFIX + "a red fox in snow")
        self.assertTrue(kw["prompt"].startswith("score_9, score_8_up, score_7_up"))
        self.assertEqual(kw["negative_prompt"], "lowres")
        self.assertNotIn("clip_skip", kw)  # diffusers' SDXL default already is "clip skip 2"
        self.assertEqual((kw["guidance_scale"], kw["num_inference_steps"]), (6.0, 25))
        own = m.parse_submission(body(model="pony", prompt="Score_9, score_8_up, a fox"))
        self.assertEqual(m.pipeline_plan(own)["kwargs"]["prompt"], "Score_9, score_8_up, a fox")
        plain = m.parse_submission(body(model="pony"))
        self.assertNotIn("negative_prompt", m.pipeline_plan(plain)["kwargs"])

    def test_anisora(self):
        plan = m.pipeline_plan(m.parse_submission(video_body()))
        self.assertEqual((plan["model"], plan["runner"], plan["fps"]), ("anisora", "anisora", 16))
        self.assertEqual(plan["kwargs"], {
            "prompt": "a cat dancing." + m.ANISORA_SUFFIX, "negative_prompt": "blurry",
            "width": 832, "height": 480, "num_frames": 81, "num_inference_steps": 40, "guidance_scale": 5.0,
            "output_type": "np", "max_sequence_length": 512,
        })
        self.assertIn("There is no text in the video.", plan["kwargs"]["prompt"])
        self.assertNotIn("image", plan["kwargs"])  # the GPU code adds the upright, cropped PIL image
        bare = m.pipeline_plan(m.parse_submission(video_body(negative_prompt="", prompt="She waves. ")))
        self.assertEqual(bare["kwargs"]["negative_prompt"], m.WAN_NEGATIVE)
        self.assertEqual(bare["kwargs"]["prompt"], "She waves." + m.ANISORA_SUFFIX)
        own = m.pipeline_plan(m.parse_submission(video_body(prompt="A run. aesthetic score: 6.0. motion score: 4.0.")))
        self.assertEqual(own["kwargs"]["prompt"], "A run. aesthetic score: 6.0. motion score: 4.0.")

    def test_anisora_t2v_runs_the_wan_base_without_anisoras_suffix(self):
        plan = m.pipeline_plan(m.parse_submission(t2v_body(negative_prompt="blurry")))
        self.assertEqual((plan["model"], plan["runner"], plan["fps"]), ("anisora", "wan21-t2v", 16))
        # WanPipeline.__call__'s keyword names (diffusers 0.40.0 pipeline_wan.py).
        self.assertEqual(plan["kwargs"], {
            "prompt": "a cat dancing", "negative_prompt": "blurry",
            "width": 480, "height": 832, "num_frames": 49, "num_inference_steps": 30, "guidance_scale": 6.0,
            "output_type": "np", "max_sequence_length": 512,
        })
        self.assertNotIn("image", plan["kwargs"])
        bare = m.pipeline_plan(m.parse_submission(t2v_body(params={}, prompt=" She waves. ")))
        self.assertEqual(bare["kwargs"]["prompt"], "She waves.")  # no AniSora score suffix for the Wan base
        self.assertEqual(bare["kwargs"]["negative_prompt"], m.WAN_NEGATIVE)  # Wan's own default negative
        self.assertEqual((bare["kwargs"]["num_inference_steps"], bare["kwargs"]["guidance_scale"]), (40, 5.0))
        self.assertEqual((bare["kwargs"]["width"], bare["kwargs"]["height"], bare["kwargs"]["num_frames"]),
                         (832, 480, 81))

    def test_every_model_and_mode_has_a_plan(self):
        for model, spec in m.MODELS.items():
            for mode in spec["modes"]:
                raw = {"task_id": "x", "type": spec["type"], "model": model, "mode": mode, "prompt": "p"}
                if mode == "i2v":
                    raw["image"] = b64(PNG)
                plan = m.pipeline_plan(m.parse_submission(json.dumps(raw).encode()))
                self.assertEqual(plan["model"], model)
                self.assertEqual(plan["runner"], m.runner_for(model, mode))
                self.assertEqual(plan["fps"] is not None, spec["type"] == "video")
                self.assertIn(plan["runner"], m.RESOURCES)
                self.assertIn(plan["runner"], m.CONVERSION_VERSION)


class RecordTest(unittest.TestCase):
    def test_first_answer_is_stable(self):
        a = m.first_answer("abc")
        self.assertEqual(a, {"task_id": "abc", "status": "pending"})
        self.assertEqual(json.dumps(a), json.dumps(m.first_answer("abc")))

    def test_record_holds_no_input_image_and_remembers_its_slot(self):
        sub = m.parse_submission(video_body())
        rec = m.new_record(sub, 100.0, slot=2)
        self.assertNotIn("image", rec)
        self.assertEqual((rec["status"], rec["progress"], rec["created_at"], rec["slot"]), ("pending", 0, 100.0, 2))
        self.assertEqual(m.status_view(rec), {"task_id": "vid1", "status": "pending", "progress": 0})


class TransitionTest(unittest.TestCase):
    def setUp(self):
        self.rec = m.new_record(m.parse_submission(body()), 10.0)

    def test_lifecycle(self):
        r = m.transition(self.rec, "processing", 11.0, progress=2)
        self.assertEqual((r["status"], r["progress"], r["started_at"]), ("processing", 2, 11.0))
        r = m.transition(r, "processing", 12.0, progress=50)
        self.assertEqual(r["started_at"], 11.0)  # set once
        r = m.transition(r, "processing", 13.0, progress=30)
        self.assertEqual(r["progress"], 50)  # never goes down
        r = m.transition(r, "processing", 13.0, progress=100)
        self.assertEqual(r["progress"], 99)  # 100 only with done
        r = m.transition(r, "done", 14.0, result={"path": "x"})
        self.assertEqual((r["status"], r["progress"], r["finished_at"], r["result"]), ("done", 100, 14.0, {"path": "x"}))
        self.assertEqual(m.status_view(r), {"task_id": "t_1-A", "status": "done", "progress": 100})

    def test_finished_tasks_stay_finished(self):
        done = m.transition(m.transition(self.rec, "processing", 1.0), "done", 2.0)
        failed = m.transition(self.rec, "failed", 2.0, error="boom")
        for rec in (done, failed):
            for status in ("pending", "processing", "done", "failed"):
                self.assertIsNone(m.transition(rec, status, 3.0), (rec["status"], status))

    def test_pending_cannot_jump_to_done(self):
        self.assertIsNone(m.transition(self.rec, "done", 2.0))

    def test_failed_view_carries_the_error(self):
        r = m.transition(m.transition(self.rec, "processing", 1.0, progress=40), "failed", 2.0, error="CUDA out of memory\n  at x")
        self.assertEqual(m.status_view(r), {"task_id": "t_1-A", "status": "failed", "progress": 40, "error": "CUDA out of memory at x"})
        r = m.transition(self.rec, "failed", 2.0)
        self.assertEqual(m.status_view(r)["error"], "generation failed")

    def test_views_use_only_statuses_the_go_client_accepts(self):
        accepted = go_client_statuses()
        # Every status a view can show, found by walking the transitions from
        # a new record (plus every status the module names), must be one the
        # Go client's ParseTaskState accepts; anything else fails every poll.
        named = {v for k, v in vars(m).items() if k.startswith("STATUS_") and isinstance(v, str)}
        candidates = named | set(m.ACTIVE) | set(m.TERMINAL)
        shown, frontier = set(), [self.rec]
        while frontier:
            rec = frontier.pop()
            view = m.status_view(rec)
            if view["status"] in shown:
                continue
            shown.add(view["status"])
            for status in candidates:
                nxt = m.transition(rec, status, 1.0, progress=50, error="x")
                if nxt is not None:
                    frontier.append(nxt)
        self.assertEqual(shown, candidates, "a named status no transition reaches, or one reached but not named")
        self.assertLessEqual(shown, accepted, f"the Go client rejects {sorted(shown - accepted)}")
        # And the other way round: the Go client accepts nothing the app does not know.
        for s in sorted(accepted):
            self.assertIn(s, m.ACTIVE + m.TERMINAL)


class ProgressTest(unittest.TestCase):
    def test_denoise_band_is_monotonic_and_bounded(self):
        for total in (1, 4, 28, 40, 60):
            seen = [m.step_progress(i, total) for i in range(total)]
            self.assertEqual(seen, sorted(seen), total)
            self.assertGreaterEqual(seen[0], m.PROGRESS_LOADED)
            self.assertEqual(seen[-1], m.PROGRESS_DENOISED)
        self.assertLess(m.PROGRESS_DENOISED, m.PROGRESS_ENCODED)
        self.assertLess(m.PROGRESS_ENCODED, 100)

    def test_odd_inputs(self):
        self.assertEqual(m.step_progress(0, 0), m.PROGRESS_LOADED)
        self.assertEqual(m.step_progress(99, 10), m.PROGRESS_DENOISED)
        self.assertEqual(m.step_progress(-5, 10), m.PROGRESS_LOADED)


class MediaTest(ApiErrorCase):
    def test_result_before_done_is_409_and_missing_preview_404(self):
        rec = m.new_record(m.parse_submission(body()), 1.0)
        self.assertApiError(409, "not_ready", m.media_entry, rec, "result")
        rec = m.transition(m.transition(rec, "processing", 2.0), "done", 3.0,
                           result={"path": "t_1-A/result.png", "content_type": "image/png", "size": 9})
        self.assertEqual(m.media_entry(rec, "result")["content_type"], "image/png")
        self.assertApiError(404, "no_preview", m.media_entry, rec, "preview")

    def test_files_by_type(self):
        self.assertEqual(m.media_files("a", "video"), {"result": ("a/result.mp4", "video/mp4"), "preview": ("a/poster.jpg", "image/jpeg")})
        self.assertEqual(m.media_files("a", "image"), {"result": ("a/result.png", "image/png"), "preview": ("a/preview.jpg", "image/jpeg")})


class ErrorsAndHousekeepingTest(unittest.TestCase):
    def test_clean_error_redacts_and_bounds(self):
        self.assertEqual(m.clean_error("401 for token hf_SECRET123 at\nline", ("hf_SECRET123", "")), "401 for token [redacted] at line")
        self.assertEqual(len(m.clean_error("x" * 5000)), m.MAX_ERROR)
        self.assertEqual(m.clean_error(""), "generation failed")

    def test_call_outcome(self):
        class Error(Exception):
            pass

        class TimeoutError_(Error):
            pass

        TimeoutError_.__name__ = "TimeoutError"

        class FunctionTimeoutError(TimeoutError_):
            pass

        class OutputExpiredError(TimeoutError_):
            pass

        cases = [
            (TimeoutError(), "processing"),
            (TimeoutError_(), "processing"),
            (FunctionTimeoutError(), "failed"),
            (OutputExpiredError(), "unknown"),
            (RuntimeError("CUDA OOM"), "failed"),
        ]
        for exc, want in cases:
            with self.subTest(type(exc).__name__):
                self.assertEqual(m.call_outcome(exc)[0], want)
        self.assertIn("time limit", m.call_outcome(FunctionTimeoutError())[1])

    def test_expired(self):
        now = 1_000_000.0
        self.assertTrue(m.expired({"status": "done", "finished_at": now - m.RETENTION_SECONDS - 1}, now))
        self.assertFalse(m.expired({"status": "done", "finished_at": now - 10}, now))
        self.assertFalse(m.expired({"status": "processing", "created_at": 0}, now))
        self.assertTrue(m.expired({"status": "failed", "finished_at": None, "created_at": 0}, now))

    def test_hf_secret_name(self):
        self.assertEqual(m.hf_secret_name({}), ("gooni-hf", False))
        self.assertEqual(m.hf_secret_name({"GOONI_HF_SECRET": ""}), ("", False))
        self.assertEqual(m.hf_secret_name({"GOONI_HF_SECRET": "my-hf"}), ("my-hf", True))

    def test_keys_do_not_collide(self):
        keys = {m.task_key("a"), m.call_key("a"), m.READY_KEY, m.Slots.key(0)}
        self.assertEqual(len(keys), 4)
        self.assertFalse(m.READY_KEY.startswith("task:"))  # the sweep only touches task: keys



# ---------------------------------------------------------------------------
# The Modal half, wired to a stand-in for the Modal client (no Modal, no torch).
# ---------------------------------------------------------------------------


class FakeDict:
    """modal.Dict's calls the app makes, in memory."""

    def __init__(self):
        self.d = {}

    def get(self, key, default=None):
        return self.d.get(key, default)

    def put(self, key, value, skip_if_exists=False):
        if skip_if_exists and key in self.d:
            return False
        self.d[key] = value
        return True

    def pop(self, key, default=None):
        return self.d.pop(key, default)

    def len(self):
        return len(self.d)

    def items(self):
        return list(self.d.items())


class FakeVolume:
    def __init__(self, name, read_only=False):
        self.name, self.read_only, self.commits = name, read_only, 0

    def with_mount_options(self, read_only=False):
        return FakeVolume(self.name, read_only)

    def commit(self):
        self.commits += 1


class FakeImage:
    def __init__(self):
        self.packages, self.environ = [], {}

    def uv_pip_install(self, *packages):
        self.packages += packages
        return self

    def env(self, environ):
        self.environ.update(environ)
        return self


class FakeMethod:
    """@modal.method(): callable on an instance, and .spawn records which class was asked."""

    def __init__(self, fn, spawned):
        self.fn, self.spawned = fn, spawned

    def __get__(self, obj, owner=None):
        method, fn, spawned = self, self.fn, self.spawned

        class Bound:
            def __call__(self, *args):
                return fn(obj, *args)

            def spawn(self, *args):
                spawned.append((type(obj).__name__, args))
                return types.SimpleNamespace(object_id=f"fc-{len(spawned)}")

        return Bound()


def fake_modal():
    """A module with the names modal_app.py uses from the Modal client, recording what it is asked."""
    fake = types.ModuleType("modal")
    fake.spawned = []
    dicts, volumes = {}, {}

    class App:
        def __init__(self, name):
            self.name, self.classes, self.functions = name, {}, {}

        def cls(self, **opts):
            def register(c):
                self.classes[c.__name__] = (c, opts)
                return c
            return register

        def function(self, **opts):
            def register(fn):
                self.functions[fn.__name__] = (fn, opts)
                return fn
            return register

    def identity(*_args, **_kwargs):
        return lambda fn: fn

    fake.App = App
    fake.Dict = types.SimpleNamespace(from_name=lambda name, **_: dicts.setdefault(name, FakeDict()))
    fake.Volume = types.SimpleNamespace(from_name=lambda name, **_: volumes.setdefault(name, FakeVolume(name)))
    fake.Image = types.SimpleNamespace(debian_slim=lambda **_: FakeImage())
    fake.Secret = types.SimpleNamespace(from_name=lambda name: types.SimpleNamespace(name=name, hydrate=lambda: None))
    fake.is_local = lambda: True
    fake.enter = identity
    fake.method = lambda: (lambda fn: FakeMethod(fn, fake.spawned))
    fake.concurrent = identity
    fake.asgi_app = identity
    fake.Period = lambda **kw: kw
    fake.FunctionCall = types.SimpleNamespace(from_id=lambda call_id: None)
    fake.dicts, fake.volumes = dicts, volumes
    return fake


def load_wired():
    """modal_app.py imported afresh with the stand-in as `modal`, so its Modal half is built."""
    fake = fake_modal()
    saved = sys.modules.get("modal")
    sys.modules["modal"] = fake
    try:
        spec = importlib.util.spec_from_file_location("modal_app_wired", os.path.join(HERE, "modal_app.py"))
        wired = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(wired)
    finally:
        if saved is None:
            sys.modules.pop("modal", None)
        else:
            sys.modules["modal"] = saved
    return wired, fake


class WiringTest(unittest.TestCase):
    """Which GPU class a submission reaches, what each class loads and asks Modal for, what `download` fetches."""

    def setUp(self):
        self.w, self.fake = load_wired()

    def test_one_gpu_class_per_runner_with_its_resources(self):
        names = {"anisora": "AniSora", "wan21-t2v": "WanT2V", "pony": "Pony", "flux": "Flux"}
        self.assertEqual(set(self.w.GPU_CLASSES), set(m.RUNNER_KEYS))
        for key, cls in self.w.GPU_CLASSES.items():
            with self.subTest(runner=key):
                self.assertEqual(cls.__name__, names[key])
                registered, opts = self.w.app.classes[cls.__name__]
                self.assertIs(registered, cls)
                self.assertEqual((opts["gpu"], opts["memory"], opts["cpu"]),
                                 (m.RESOURCES[key]["gpu"], m.RESOURCES[key]["memory"], m.RESOURCES[key]["cpu"]))
                self.assertEqual(opts["env"], {"HF_HUB_OFFLINE": "1"})
                self.assertTrue(opts["volumes"][m.MODELS_DIR].read_only)  # only `download` writes weights
                self.assertFalse(opts["volumes"][m.MEDIA_DIR].read_only)
                self.assertEqual(opts["max_containers"], m.CAPACITY)
        _, t2v = self.w.app.classes["WanT2V"]
        self.assertEqual(t2v["gpu"], "H100")
        self.assertEqual((t2v["timeout"], t2v["startup_timeout"]), (m.VIDEO_TIMEOUT, m.VIDEO_STARTUP))

    def test_submissions_reach_the_class_of_their_model_and_mode(self):
        cases = [(t2v_body(), "WanT2V"), (video_body(), "AniSora"),
                 (body(model="pony"), "Pony"), (body(), "Flux")]
        for raw, want in cases:
            with self.subTest(want=want):
                sub = self.w.parse_submission(raw)
                call = self.w._spawn(sub)
                self.assertEqual(self.fake.spawned[-1], (want, (sub["task_id"], sub)))
                self.assertTrue(call.object_id)
        self.assertEqual(len(self.fake.spawned), len(cases))

    def test_each_class_loads_its_own_weights_once_and_runs_with_them(self):
        loaded, ran = [], []
        self.w._load = lambda key: loaded.append(key) or f"pipe:{key}"
        self.w._run = lambda pipe, task_id, sub: ran.append((pipe, task_id))
        for key, cls in self.w.GPU_CLASSES.items():
            obj = cls()
            obj.load()
            obj.generate("t1", {})
            obj.generate("t2", {})
        self.assertEqual(loaded, list(self.w.GPU_CLASSES))
        self.assertIn(("pipe:wan21-t2v", "t1"), ran)
        self.assertEqual(len(ran), 2 * len(self.w.GPU_CLASSES))

    def test_download_anisora_fetches_both_modes_weights(self):
        fetched = []
        self.w._fetch = lambda key, token: fetched.append(key)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.w.download("anisora")
        self.assertEqual(fetched, ["anisora", "wan21-t2v"])
        self.assertIn("gooni: ready now: ['anisora']", out.getvalue())
        ready = self.fake.dicts[m.TASKS_DICT].get(m.READY_KEY)
        self.assertEqual(ready, {"anisora": m.weights_fingerprint("anisora"),
                                 "wan21-t2v": m.weights_fingerprint("wan21-t2v")})
        self.assertEqual(self.w.served_models(ready, False), ["anisora"])
        self.assertEqual(self.fake.volumes[m.MODELS_VOLUME].commits, 1)

    def test_a_failed_t2v_download_keeps_anisora_out_of_health(self):
        def fetch(key, token):
            if key == "wan21-t2v":
                raise OSError("disk full")

        self.w._fetch = fetch
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(RuntimeError):
            self.w.download("anisora,pony")
        self.assertIn("gooni: wan21-t2v: FAILED: disk full", out.getvalue())
        self.assertIn("gooni: ready now: ['pony']", out.getvalue())
        ready = self.fake.dicts[m.TASKS_DICT].get(m.READY_KEY)
        self.assertEqual(set(ready), {"anisora", "pony"})
        self.assertEqual(self.w.served_models(ready, False), ["pony"])


if __name__ == "__main__":
    unittest.main()
