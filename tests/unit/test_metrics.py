"""/metrics: Prometheus text behind credentials (its speed with many workflows:
tests/integration/test_at_scale.py)."""

import re

from beyond_fixtures import TO_SUCCESS, move, stack  # noqa: F401


SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+Inf-]+$')


def test_metrics_are_prometheus_text_and_need_credentials(stack):
    stack.ensemble("m", max_planning=2)
    stack.submit("m", "a")
    stack.submit("m", "b", after="a")
    stack.submit("m", "c", run_after="1h")
    move(stack, "m", "a", *TO_SUCCESS)
    assert stack.request("GET", "/metrics", auth=False)[0] == 401
    status, headers, text = stack.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    assert 'pegasus_em_workflows{ensemble="m",state="SUCCESSFUL"} 1' in text
    assert 'pegasus_em_workflows{ensemble="m",state="READY"} 2' in text
    assert 'pegasus_em_throttle_limit{ensemble="m",kind="planning"} 2' in text
    assert 'pegasus_em_throttle_used{ensemble="m",kind="running"} 0' in text
    assert 'pegasus_em_workflows_waiting{ensemble="m",cause="run_after"} 1' in text
    assert 'pegasus_em_ensemble_state{ensemble="m",state="ACTIVE"} 1' in text
    for state in ("READY", "PLANNING", "QUEUED", "RUNNING"):
        buckets = [int(v) for v in re.findall(
            r'pegasus_em_state_seconds_bucket\{state="%s",le="[^"]+"\} (\d+)' % state, text)]
        assert buckets and buckets == sorted(buckets) and buckets[-1] == 1, state
        assert 'pegasus_em_state_seconds_count{state="%s"} 1' % state in text
    assert "# TYPE pegasus_em_trigger_lag_seconds histogram" in text
