"""easload run --dry-run: the plan from the scenario and the population builder (loadgen/run/plan.py)."""

from collections import Counter

from loadgen.run import plan
from loadgen import scenario
from loadgen.cli.app import main
from loadgen.run.engine import build_population

REMOTE = '[target]\nurl = "https://mail.example.com/Microsoft-Server-ActiveSync"\n'


def test_counts_come_from_the_population_builder():
    sc = scenario.parse('seed = 3\nduration = 60\n[auth]\nusers = 150\n[population]\ndevices = 300\n'
                        'versions = { "12.1" = 1, "14.1" = 2 }\nprofiles = { modern = 3, non_provisionable = 1 }\n')
    p = plan.build(sc)
    devices, _ = build_population(sc, "http://127.0.0.1/Microsoft-Server-ActiveSync")
    assert p["versions"] == dict(Counter(d.version.text for d in devices))
    assert p["profiles"] == dict(Counter(d.profile.name for d in devices))
    assert p["devices"] == 300 and p["users"] == 150
    # per device: Provision x2 (none for non-provisionable), Settings for 12.1, FolderSync, Sync x2
    provisionable = sum(1 for d in devices if d.profile.caps.provisionable)
    assert p["enrolment_requests"]["Provision"] == 2 * provisionable
    assert p["enrolment_requests"]["Settings"] == p["versions"]["12.1"]
    assert p["enrolment_requests"]["FolderSync"] == 300 and p["enrolment_requests"]["Sync"] == 600
    assert plan.build(sc) == p  # deterministic


def test_closed_model_phases_and_rates():
    sc = scenario.parse('duration = 100\n[auth]\nusers = 100\n[population]\ndevices = 200\n[load]\nramp_up = 10\nheartbeat = 100\n')
    p = plan.build(sc)
    burst, steady = p["phases"]
    assert burst["phase"] == "enrolment burst" and burst["arrivals"] == 200 and burst["arrivals_per_s"] == 20
    # 20 enrolments/s x 5 requests (14.1: Provision x2, FolderSync, Sync x2) + on average 100 enrolled
    # devices Pinging every 100 s
    assert burst["requests_per_s"] == 20 * 5 + 100 * 0.01
    assert steady["phase"] == "steady state" and steady["requests_per_s"] == 2.0 and steady["arrivals"] == 0
    assert p["steady_what"].startswith("one Ping every 100 s")
    assert len(p["timeline"]) == 12 and p["peak_requests_per_s"] >= 100


def test_embedded_heartbeat_bounds_and_poll_mode():
    sc = scenario.parse('[load]\nheartbeat = 8\n')  # the embedded target's lower bound is 60 s
    rate, what = plan.steady_rate(sc)
    assert rate == 1 / 60 and "turn 8 s into 60 s" in what
    sc = scenario.parse('[load]\nmode = "poll"\nthink_time = 4\n')
    assert plan.steady_rate(sc)[0] == 0.25


def test_open_model_stages():
    sc = scenario.parse('duration = 30\n[auth]\nusers = 500\n[population]\ndevices = 1000\n[load]\nmodel = "open"\narrival_rate = 10\n'
                        'stages = [{ duration = "10s", target = 30 }]\nthink_time = 5\nmode = "poll"\n')
    p = plan.build(sc)
    first, hold = p["phases"]
    assert first["phase"] == "stage to 30 arrivals/s" and first["arrivals"] == 200  # (10 + 30) / 2 x 10 s
    assert hold["phase"] == "hold 30 arrivals/s" and hold["arrivals"] == 600
    assert p["phases"][1]["active_devices_at_end"] == 800


def test_events_cap_and_warning():
    sc = scenario.parse(REMOTE + '[auth]\nusers = 250\n[population]\ndevices = 500\n[load]\nramp_up = 1\n'
                        '[[events]]\nat = "30s"\naction = "command"\nrun = "curl -u admin:secret https://x"\n')
    p = plan.build(sc)
    assert p["rate_cap"]["requests_per_s"] == 50 and "not on this machine" in p["rate_cap"]["why"]
    assert p["events"][0]["at"] == 30 and p["events"][0]["args"] == {"run": "curl ..."}  # never the arguments
    assert any("above the request-rate cap" in w for w in p["warnings"])
    text = plan.text(p)
    assert "secret" not in text and "rate cap    50 requests/s" in text


def test_dry_run_prints_the_plan_and_sends_nothing(tmp_path, capsys):
    f = tmp_path / "remote.toml"
    # 500 devices on a remote server: a real run would need --yes; a dry run sends nothing, so it does not.
    # The host is on a TEST-NET address that nothing answers: a request would hang, the plan does not.
    f.write_text('[target]\nurl = "https://192.0.2.1/Microsoft-Server-ActiveSync"\n[auth]\nusers = 250\n'
                 '[population]\ndevices = 500\n[load]\nmax_request_rate = 20\n')
    assert main(["run", str(f), "--dry-run", "--metrics-listen", ""]) == 0
    out = capsys.readouterr().out
    assert "nothing is sent" in out and "devices     500 on 250 users" in out
    assert "rate cap    20 requests/s in total (set in the scenario)" in out
    assert "Expected request rate by phase" in out and "enrolment burst" in out
    assert main(["run", str(f), "--dry-run", "--workers", "4"]) == 0
    assert "5/s in each of 4 processes" in capsys.readouterr().out
