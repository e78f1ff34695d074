"""Bad scenario values and bad flags, table-driven: each is exit 2 with one line on stderr naming the
key or the flag, never a traceback, and nothing is sent (the check comes before any load)."""

import os
import subprocess
import sys

import pytest

from loadgen.cli.app import main

# (scenario text, what the one line must name)
SCENARIOS = [
    ("duration = nan\n", "'duration'"),
    ("duration = inf\n", "'duration'"),
    ("duration = 0\n", "'duration'"),
    ('duration = "%s"\n' % ("9" * 400), "'duration'"),  # a number that becomes inf as a float
    ("[load]\ntimeout = nan\n", "'timeout'"),
    ("[load]\ntimeout = inf\n", "'timeout'"),
    ("[load]\nthink_time = inf\n", "'think_time'"),
    ("[load]\nramp_up = -inf\n", "'ramp_up'"),
    ("[load]\nbackoff = nan\n", "'backoff'"),
    ("[load]\narrival_rate = nan\n", "'arrival_rate'"),
    ("[load]\narrival_rate = inf\n", "'arrival_rate'"),
    ("[load]\nmax_request_rate = inf\n", "'max_request_rate'"),
    ("[load]\nmax_request_rate = nan\n", "'max_request_rate'"),
    ('[load]\nmodel = "open"\nstages = [{ duration = "10s", target = inf }]\n', "'target'"),
    ('[load]\nstages = [{ duration = nan, target = 1 }]\n', "'duration'"),
    ("[target]\nmail_per_user_per_hour = inf\n", "'mail_per_user_per_hour'"),
    ("[target]\nping_min = 100\nping_max = 10\n", "'ping_min'"),
    ("[target]\nprocesses = 100000\n", "'processes'"),
    ("[population]\ndevices = 1000000000\n[auth]\nusers = 1000000000\n", "'users'"),
    ("[population]\ndevices = 1000000000\n", "'devices'"),
    ("[population]\ndevices_per_user = 100000\n", "'devices_per_user'"),
    ("[load]\nwindow_size = 100000\n", "'window_size'"),
    ("[auth]\nfirst_user = -1\n", "'first_user'"),
    ('[auth]\nuser = "u{n.__class__}"\n', "'user'"),
    ('[auth]\nuser = "u{0}"\n', "'user'"),
    ('[auth]\nuser = "u{n:>99999}"\n', "'user'"),
    ('[auth]\npassword = "p{n!r}"\n', "'password'"),
    ('[auth]\nuser = "u{"\n', "'user'"),
    ('[target]\nautodiscover = "u{n.real}@example.com"\n', "'autodiscover'"),
    ('[target]\npath = "/Micro soft"\n', "'path'"),
    ('[target]\npath = "/é"\n', "'path'"),
    ('[target]\nurl = "https://ex\u00e4mple.com/x"\n', "'url'"),
    ('[[events]]\nat = nan\naction = "mail"\n', "'at'"),
    ('[[events]]\nat = 1\naction = "wipe"\nfraction = "half"\n', "'fraction'"),
    ('[[events]]\nat = 1\naction = "wipe"\nfraction = 2\n', "'fraction'"),
    ('[[events]]\nat = 1\naction = "wipe"\naccount_only = "yes"\n', "'account_only'"),
    ('[[events]]\nat = 1\naction = "mail"\ncount = "3"\n', "'count'"),
    ('[[events]]\nat = 1\naction = "mail"\nfraction = nan\n', "'fraction'"),
    ('[[events]]\nat = 1\naction = "command"\nrun = 5\n', "run"),
    ('[[events]]\nat = 1\naction = "abq"\ndefault = "Maybe"\n', "'default'"),
    ('[[events]]\nat = 1\naction = "abq"\nallowed_ids = "X"\n', "'allowed_ids'"),
    ('[[events]]\nat = 1\naction = "abq"\nrules = [{ characteristic = "Colour", query = "x", access = "Allow" }]\n',
     "'rules'"),
    ('[[events]]\nat = 1\naction = "change_policy"\nsettings = { MinPasswordLength = 6 }\n',
     "did you mean 'MinDevicePasswordLength'"),
    ('[[events]]\nat = 1\naction = "change_policy"\nsettings = { MinDevicePasswordLength = 1.5 }\n',
     "'MinDevicePasswordLength'"),
    ('[[events]]\nat = 1\naction = "change_policy"\nsettings = { AllowCamera = true }\n', "'AllowCamera'"),
    ('[[events]]\nat = 1\naction = "change_policy"\nsettings = 3\n', "'settings'"),
    ('[[events]]\nat = 1\naction = "faults"\nsettings = { reset_rate = "often" }\n', "'reset_rate'"),
    ('[[events]]\nat = 1\naction = "faults"\nsettings = { reset_rate = nan }\n', "'reset_rate'"),
    ('[[events]]\nat = 1\naction = "faults"\nsettings = { error_rates = { "200" = 0.5 } }\n', "'error_rates'"),
    ('[[events]]\nat = 1\naction = "faults"\nsettings = { latency = { dist = "fixed", seconds = inf } }\n',
     "'latency'"),
    ('[[events]]\nat = 1\naction = "faults"\nsettings = { resett_rate = 0.1 }\n', "did you mean 'reset_rate'"),
    ('[thresholds]\n"errors.rate" = "< %s"\n' % ("9" * 400), "'errors.rate'"),
]


def _one_line(err, needle):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("text,needle", SCENARIOS, ids=[n for _t, n in SCENARIOS])
def test_bad_scenario_value_is_exit_2_naming_the_key(tmp_path, capsys, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text, encoding="utf-8")
    assert main(["validate", str(f)]) == 2
    out = capsys.readouterr()
    _one_line(out.err, needle)
    assert str(f) in out.err


def test_non_utf8_password_variable_is_exit_2_naming_it(tmp_path):
    f = tmp_path / "pw.toml"
    f.write_text('[auth]\npassword_env = "EASLOAD_TEST_PW"\n')
    env = dict(os.environb)
    env[b"EASLOAD_TEST_PW"] = b"Pass\xff{n}"
    out = subprocess.run([sys.executable, "-m", "loadgen", "validate", str(f)], capture_output=True, env=env,
                         timeout=60)
    err = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 2, err
    _one_line(err, "EASLOAD_TEST_PW")


def _scenario(tmp_path, target="embedded"):
    f = tmp_path / "ok.toml"
    f.write_text('duration = 1\n[target]\nurl = "%s"\n[population]\ndevices = 2\n' % target)
    return str(f)


# (argv after "run SCENARIO", what the one line must name); each would start load (or hang) if accepted
RUN_FLAGS = [
    (["--duration", "nan"], "--duration"),
    (["--duration", "inf"], "--duration"),
    (["--duration", "-5"], "--duration"),
    (["--duration", "0"], "--duration"),
    (["--devices", "1000000000"], "--devices"),
    (["--devices", "1000000000", "--dry-run"], "--devices"),
    (["--devices", "0"], "--devices"),
    (["--devices", "many"], "--devices"),
    (["--devices", "900000"], "--workers"),  # above the per-process bound: says how to split it
    (["--workers", "100000"], "--workers"),
    (["--shards", "0"], "--shards"),
    (["--shard", "0/0"], "--shard"),
    (["--start-at", "nan"], "--start-at"),
    (["--start-at", "inf"], "--start-at"),
    (["--linger", "nan"], "--linger"),
    (["--metrics-listen", "127.0.0.1:99999"], "--metrics-listen"),
    (["--metrics-listen", "127.0.0.1:http"], "--metrics-listen"),
    (["--target", "http://127.0.0.1:99999/x"], "--target"),
]

TARGET_FLAGS = [
    (["--users", "0"], "--users"),
    (["--users", "1000000000"], "--users"),
    (["--ping-min", "100", "--ping-max", "10"], "--ping-min"),
    (["--processes", "100000"], "--processes"),
    (["--processes", "0"], "--processes"),
    (["--command-rate", "nan"], "--command-rate"),
    (["--command-rate", "0"], "--command-rate"),
    (["--listen", "127.0.0.1:99999"], "--listen"),
    (["--admin-listen", "127.0.0.1:70000"], "--admin-listen"),
    (["--http-port", "99999", "--tls-self-signed"], "--http-port"),
    (["--user-pattern", "u{n.__class__}"], "--user-pattern"),
    (["--password-pattern", "{0}"], "--password-pattern"),
    (["--policy-refresh-minutes", "-1"], "--policy-refresh-minutes"),
]


def _run(argv, **kw):
    return subprocess.run([sys.executable, "-m", "loadgen", *argv], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, start_new_session=True, **kw)


@pytest.mark.parametrize("argv,needle", RUN_FLAGS, ids=[" ".join(a) for a, _n in RUN_FLAGS])
def test_bad_run_flag_is_exit_2_naming_it(tmp_path, argv, needle):
    out = _run(["run", _scenario(tmp_path), "-q", *argv] + ([] if "--metrics-listen" in argv
                                                           else ["--metrics-listen", ""]))
    assert out.returncode == 2, (argv, out.stdout[-2000:], out.stderr[-2000:])
    _one_line(out.stderr, needle)


@pytest.mark.parametrize("argv,needle", TARGET_FLAGS, ids=[" ".join(a) for a, _n in TARGET_FLAGS])
def test_bad_target_flag_is_exit_2_naming_it(argv, needle):
    out = _run(["target", "--listen", "127.0.0.1:0", "--admin-listen", "", *argv])
    assert out.returncode == 2, (argv, out.stderr[-2000:])
    _one_line(out.stderr, needle)


def _pem_key_with_passphrase(tmp_path):
    """A self-signed certificate and its key encrypted with a passphrase (openssl, as an operator makes it)."""
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=easload-test", "-passout", "pass:secret"],
                   check=True, capture_output=True, timeout=120)
    return cert, key


def test_client_key_with_a_passphrase_is_exit_2_naming_client_key(tmp_path):
    cert, key = _pem_key_with_passphrase(tmp_path)
    f = tmp_path / "mtls.toml"
    f.write_text('duration = 1\n[target]\nurl = "https://127.0.0.1:9/Microsoft-Server-ActiveSync"\n'
                 'client_cert = "%s"\nclient_key = "%s"\n[population]\ndevices = 1\n' % (cert, key))
    out = _run(["run", str(f), "-q", "--metrics-listen", ""])
    assert out.returncode == 2, out.stderr[-2000:]
    _one_line(out.stderr, "client_key")


def test_argparse_errors_are_one_line(tmp_path):
    out = _run(["run", "--workers"])
    assert out.returncode == 2
    _one_line(out.stderr, "--workers")


def test_probe_non_utf8_password_variable_is_exit_2_naming_it():
    env = dict(os.environb)
    env[b"EAS_PASSWORD"] = b"\xff\xfe"
    out = subprocess.run([sys.executable, "-m", "loadgen", "probe", "http://127.0.0.1:9/Microsoft-Server-ActiveSync",
                          "--user", "u"], capture_output=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    err = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 2, err
    _one_line(err, "EAS_PASSWORD")


@pytest.mark.parametrize("name,data", [
    ("deep", ('<?xml version="1.0"?>' + '<Sync xmlns="AirSync:">' * 100_000 + "</Sync>" * 100_000).encode()),
    ("base64", b'<?xml version="1.0"?><Sync xmlns="AirSync:"><SyncKey opaque="base64">!!not b64</SyncKey></Sync>'),
    ("utf8", b'<?xml version="1.0" encoding="utf-8"?><Sync xmlns="AirSync:"><SyncKey>\xff\xfe</SyncKey></Sync>'),
], ids=["deep", "base64", "utf8"])
def test_wbxml_encode_of_bad_input_is_exit_2(tmp_path, capsys, name, data):
    f = tmp_path / (name + ".xml")
    f.write_bytes(data)
    assert main(["wbxml", "encode", str(f)]) == 2
    _one_line(capsys.readouterr().err, str(f))
