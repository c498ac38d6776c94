"""Tests of the pure half of modal_app.py: stdlib only, no Modal, FastAPI or GPU.

Run: python3 -m unittest discover modal -v
"""

import base64
import json
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Never let an import reach out to Modal for the HF secret, even where modal is installed.
os.environ.setdefault("GOONI_HF_SECRET", "")

import modal_app as m  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8


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
        "prompt": "a red fox in snow", "negative_prompt": "", "params": {"width": 1024, "height": 768, "steps": 20, "guidance": 3.5, "seed": 7},
    }
    b.update(over)
    return json.dumps(b).encode()


def video_body(**over):
    b = {
        "task_id": "vid1", "type": "video", "model": "anisora", "mode": "t2v",
        "prompt": "a cat dancing", "negative_prompt": "blurry",
        "params": {"width": 832, "height": 480, "num_frames": 81, "fps": 16, "steps": 30, "guidance": 5, "seed": -1},
    }
    b.update(over)
    return json.dumps(b).encode()


class ApiErrorCase(unittest.TestCase):
    def assertApiError(self, status, code, fn, *args):
        with self.assertRaises(m.ApiError) as cm:
            fn(*args)
        self.assertEqual((cm.exception.status, cm.exception.code), (status, code), cm.exception.message)
        self.assertEqual(cm.exception.body(), {"error": code, "message": cm.exception.message})


class ImportTest(unittest.TestCase):
    def test_pure_half_imports_without_modal(self):
        # The deploy machine has modal; CI does not. Either way the logic is reachable.
        self.assertTrue(callable(m.parse_submission))
        if m.modal is None:
            self.assertFalse(hasattr(m, "app"))

    def test_names_make_the_default_workspace_url(self):
        # GG_WORKSPACE_URL default is https://{workspace}--gooni-inference.modal.run.
        self.assertEqual(m.WEB_LABEL, "gooni-inference")
        self.assertEqual(m.APP_NAME, "gooni-inference")

    def test_models_are_the_catalog_ids(self):
        catalog = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inference_settings.json")
        if not os.path.exists(catalog):
            # Only a copy of modal/ alone lacks it; CI (GG_REQUIRE_TOOLS=1) must not skip.
            if os.environ.get("GG_REQUIRE_TOOLS") == "1":
                self.fail(f"GG_REQUIRE_TOOLS=1 but the catalog {catalog} is missing")
            self.skipTest("no catalog next to the workspace dir")
        with open(catalog) as f:
            cat = json.load(f)
        for model in cat["models"]:
            self.assertIn(model["id"], m.MODELS)
            self.assertEqual(m.MODELS[model["id"]]["type"], model["type"])
            self.assertEqual(set(m.MODELS[model["id"]]["modes"]), set(model["modes"]))
            for p in model["params"]:
                if p["name"] != "seed":
                    self.assertEqual(m.DEFAULTS[model["id"]][p["name"]], p["default"], (model["id"], p["name"]))
                lo, hi, _ = m.PARAM_LIMITS[p["name"]]
                # The workspace must accept everything the catalog allows.
                self.assertLessEqual(lo, p["min"], (model["id"], p["name"]))
                self.assertGreaterEqual(hi, p["max"], (model["id"], p["name"]))


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
        self.assertEqual(sub["params"]["width"], 1024)
        self.assertEqual(sub["params"]["height"], 768)
        self.assertEqual(sub["params"]["steps"], 20)
        self.assertEqual(sub["params"]["seed"], 7)
        self.assertIsNone(sub["image"])

    def test_defaults_fill_omitted_params_and_unknown_names_are_ignored(self):
        sub = m.parse_submission(body(params={"future_knob": 3}))
        self.assertEqual(sub["params"]["width"], 1024)
        self.assertEqual(sub["params"]["steps"], 28)
        self.assertEqual(sub["params"]["guidance"], 3.5)
        self.assertEqual(sub["params"]["seed"], -1)
        self.assertNotIn("future_knob", sub["params"])
        self.assertEqual(m.parse_submission(body(params=None))["params"]["steps"], 28)

    def test_video_i2v_takes_base64_and_data_urls(self):
        for img in [PNG, JPEG, WEBP]:
            for enc in [base64.b64encode(img).decode(), "data:image/png;base64," + base64.b64encode(img).decode()]:
                sub = m.parse_submission(video_body(mode="i2v", image=enc))
                self.assertEqual(sub["image"], img)
                self.assertEqual(sub["params"]["num_frames"], 81)

    def test_integral_floats_pass_as_ints(self):
        sub = m.parse_submission(body(params={"width": 512.0}))
        self.assertEqual(sub["params"]["width"], 512)
        self.assertIsInstance(sub["params"]["width"], int)

    def test_refusals(self):
        big = b'{"task_id":"a","pad":"' + b"x" * m.MAX_BODY + b'"}'
        cases = [
            ("not json", b"{nope", 400, "invalid_json"),
            ("array", b"[]", 400, "invalid_json"),
            ("null", b"null", 400, "invalid_json"),
            ("bad utf8", b"\xff\xfe", 400, "invalid_json"),
            ("too large", big, 413, "too_large"),
            ("no id", body(task_id=None), 400, "invalid_task_id"),
            ("id with slash", body(task_id="a/b"), 400, "invalid_task_id"),
            ("bad type", body(type="audio"), 400, "invalid_type"),
            ("type mismatch", body(type="video"), 400, "invalid_type"),
            ("unknown model", body(model="sdxl"), 400, "invalid_model"),
            ("bad mode", body(mode="i2v"), 400, "invalid_mode"),
            ("empty prompt", body(prompt="  "), 400, "invalid_prompt"),
            ("prompt not string", body(prompt=5), 400, "invalid_prompt"),
            ("prompt too long", body(prompt="x" * (m.MAX_PROMPT + 1)), 400, "invalid_prompt"),
            ("negative not string", body(negative_prompt=["x"]), 400, "invalid_prompt"),
            ("params not object", body(params=[1]), 400, "invalid_params"),
            ("param string", body(params={"width": "512"}), 400, "invalid_params"),
            ("param bool", body(params={"steps": True}), 400, "invalid_params"),
            ("param fraction", body(params={"steps": 2.5}), 400, "invalid_params"),
            ("param too big", body(params={"width": 4096}), 400, "invalid_params"),
            ("param huge int", b'{"task_id":"a","type":"image","model":"flux","mode":"t2i","prompt":"p","params":{"width":1' + b"0" * 400 + b"}}", 400, "invalid_params"),
            ("param NaN", b'{"task_id":"a","type":"image","model":"flux","mode":"t2i","prompt":"p","params":{"guidance":NaN}}', 400, "invalid_params"),
            ("param Infinity", b'{"task_id":"a","type":"image","model":"flux","mode":"t2i","prompt":"p","params":{"guidance":Infinity}}', 400, "invalid_params"),
            ("seed below -1", body(params={"seed": -2}), 400, "invalid_params"),
            ("width off grid", body(params={"width": 1001}), 400, "invalid_params"),
            ("frames not 4k+1", video_body(params={"num_frames": 80}), 400, "invalid_params"),
            ("i2v without image", video_body(mode="i2v"), 400, "invalid_image"),
            ("i2v bad base64", video_body(mode="i2v", image="!!!"), 400, "invalid_image"),
            ("i2v not an image", video_body(mode="i2v", image=base64.b64encode(b"GIF89a....").decode()), 400, "invalid_image"),
        ]
        for name, raw, status, code in cases:
            with self.subTest(name):
                self.assertApiError(status, code, m.parse_submission, raw)


class SubmitDecisionTest(unittest.TestCase):
    def test_table(self):
        rec = {"status": "done"}
        cases = [
            (None, 0, 4, "start"),
            (None, 3, 4, "start"),
            (None, 4, 4, "busy"),
            # A known id answers as the first time, even when the workspace is full.
            (rec, 4, 4, "repeat"),
            (rec, 0, 4, "repeat"),
        ]
        for existing, running, cap, want in cases:
            self.assertEqual(m.submit_decision(existing, running, cap), want)

    def test_first_answer_is_stable(self):
        a = m.first_answer("abc")
        self.assertEqual(a, {"task_id": "abc", "status": "pending"})
        self.assertEqual(json.dumps(a), json.dumps(m.first_answer("abc")))

    def test_record_holds_no_input_image(self):
        sub = m.parse_submission(video_body(mode="i2v", image=base64.b64encode(PNG).decode()))
        rec = m.new_record(sub, 100.0)
        self.assertNotIn("image", rec)
        self.assertEqual((rec["status"], rec["progress"], rec["created_at"]), ("pending", 0, 100.0))
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
        for total in (1, 4, 28, 30, 60):
            seen = [m.step_progress(i, total) for i in range(total)]
            self.assertEqual(seen, sorted(seen), total)
            self.assertGreater(seen[0], m.PROGRESS_LOADED - 1)
            self.assertEqual(seen[-1], m.PROGRESS_DENOISED)
            self.assertLess(m.PROGRESS_DENOISED, m.PROGRESS_ENCODED)
            self.assertLess(m.PROGRESS_ENCODED, 100)

    def test_odd_inputs(self):
        self.assertEqual(m.step_progress(0, 0), m.PROGRESS_LOADED)
        self.assertEqual(m.step_progress(99, 10), m.PROGRESS_DENOISED)
        self.assertEqual(m.step_progress(-5, 10), m.PROGRESS_LOADED)

    def test_running_counts_active_only(self):
        recs = [{"status": s} for s in ("pending", "processing", "done", "failed", "processing")] + [None, "junk"]
        self.assertEqual(m.count_running(recs), 3)


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


class PipelinePlanTest(unittest.TestCase):
    def test_flux_dev_with_token_schnell_without(self):
        sub = m.parse_submission(body())
        dev = m.pipeline_plan(sub, True)
        self.assertEqual((dev["kind"], dev["repo"]), ("flux", m.FLUX_DEV))
        self.assertEqual(dev["kwargs"], {
            "prompt": "a red fox in snow", "width": 1024, "height": 768,
            "num_inference_steps": 20, "guidance_scale": 3.5, "max_sequence_length": 512,
        })
        schnell = m.pipeline_plan(sub, False)
        self.assertEqual(schnell["repo"], m.FLUX_SCHNELL)
        self.assertEqual(schnell["kwargs"]["guidance_scale"], 0.0)
        self.assertEqual(schnell["kwargs"]["max_sequence_length"], 256)
        self.assertNotIn("negative_prompt", schnell["kwargs"])

    def test_pony(self):
        sub = m.parse_submission(body(model="pony", negative_prompt="lowres", params={"guidance": 6}))
        plan = m.pipeline_plan(sub, False)
        self.assertEqual((plan["kind"], plan["repo"], plan["file"]), ("sdxl", m.PONY_REPO, m.PONY_FILE))
        self.assertEqual(plan["kwargs"]["negative_prompt"], "lowres")
        self.assertEqual(plan["kwargs"]["clip_skip"], 2)
        self.assertEqual(plan["kwargs"]["guidance_scale"], 6.0)
        self.assertEqual(plan["kwargs"]["num_inference_steps"], 25)

    def test_wan(self):
        t2v = m.pipeline_plan(m.parse_submission(video_body()), False)
        self.assertEqual((t2v["kind"], t2v["repo"], t2v["fps"]), ("wan_t2v", m.REPOS[("anisora", "t2v")], 16))
        self.assertEqual(t2v["kwargs"], {
            "prompt": "a cat dancing", "negative_prompt": "blurry", "width": 832, "height": 480,
            "num_frames": 81, "num_inference_steps": 30, "guidance_scale": 5.0, "output_type": "np",
        })
        i2v = m.pipeline_plan(m.parse_submission(video_body(model="phr00t", mode="i2v", params={"fps": 24, "steps": 4},
                                                            image=base64.b64encode(JPEG).decode())), False)
        self.assertEqual((i2v["kind"], i2v["repo"], i2v["fps"]), ("wan_i2v", m.REPOS[("phr00t", "i2v")], 24))
        self.assertEqual(i2v["kwargs"]["num_inference_steps"], 4)
        self.assertNotIn("image", i2v["kwargs"])  # the GPU code adds the decoded PIL image

    def test_every_model_and_mode_has_a_plan(self):
        for model, spec in m.MODELS.items():
            for mode in spec["modes"]:
                raw = {"task_id": "x", "type": spec["type"], "model": model, "mode": mode, "prompt": "p"}
                if mode == "i2v":
                    raw["image"] = base64.b64encode(PNG).decode()
                plan = m.pipeline_plan(m.parse_submission(json.dumps(raw).encode()), True)
                self.assertTrue(plan["repo"], (model, mode))
                self.assertEqual(plan["fps"] is not None, spec["type"] == "video")

    def test_seed(self):
        self.assertEqual(m.resolve_seed(42), 42)
        rng = random.Random(1)
        seeds = {m.resolve_seed(-1, rng) for _ in range(20)}
        self.assertGreater(len(seeds), 1)
        self.assertTrue(all(0 <= s <= m.SEED_MAX for s in seeds))


class ErrorsAndHousekeepingTest(unittest.TestCase):
    def test_clean_error_redacts_and_bounds(self):
        self.assertEqual(m.clean_error("401 for token hf_SECRET123 at\nline", ("hf_SECRET123", "")), "401 for token [redacted] at line")
        long = m.clean_error("x" * 5000)
        self.assertEqual(len(long), m.MAX_ERROR)
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
        self.assertNotEqual(m.task_key("a"), m.call_key("a"))


if __name__ == "__main__":
    unittest.main()
