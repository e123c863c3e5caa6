"""The init command's rules, as text: what is redirected, what is excluded, what removal undoes."""

from __future__ import annotations

import pytest

from sofamesh.intercept import rules
from sofamesh.intercept.init import main
from sofamesh.intercept.rules import InterceptPlan, install_rules, remove_rules


def _lines(plan: InterceptPlan) -> list[str]:
    return [" ".join(r) for r in install_rules(plan)]


def test_the_sidecar_owner_returns_before_any_redirect() -> None:
    lines = _lines(InterceptPlan(proxy_uids=(1000,), proxy_gids=(2000,)))
    owner = lines.index("-t nat -A SOFAMESH_OUTPUT -m owner --uid-owner 1000 -j RETURN")
    gid = lines.index("-t nat -A SOFAMESH_OUTPUT -m owner --gid-owner 2000 -j RETURN")
    redirect = lines.index("-t nat -A SOFAMESH_OUTPUT -p tcp -j SOFAMESH_REDIRECT")
    assert owner < redirect and gid < redirect
    assert "-t nat -A SOFAMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in lines


def test_exclusions_come_before_the_redirect() -> None:
    plan = InterceptPlan(
        exclude_outbound_ports=(5432,),
        exclude_outbound_cidrs=("10.1.0.0/16",),
        exclude_inbound_ports=(22,),
        inbound_ports=(8080, 9090),
    )
    lines = _lines(plan)
    redirect = lines.index("-t nat -A SOFAMESH_OUTPUT -p tcp -j SOFAMESH_REDIRECT")
    assert lines.index("-t nat -A SOFAMESH_OUTPUT -p tcp --dport 5432 -j RETURN") < redirect
    assert lines.index("-t nat -A SOFAMESH_OUTPUT -d 10.1.0.0/16 -j RETURN") < redirect
    assert lines.index("-t nat -A SOFAMESH_OUTPUT -o lo -j RETURN") < redirect
    assert "-t nat -A SOFAMESH_INBOUND -p tcp --dport 22 -j RETURN" in lines
    assert "-t nat -A SOFAMESH_INBOUND -p tcp --dport 15006 -j RETURN" in lines
    for port in (8080, 9090):
        assert f"-t nat -A SOFAMESH_INBOUND -p tcp --dport {port} -j SOFAMESH_IN_REDIRECT" in lines
    assert "-t nat -A SOFAMESH_INBOUND -p tcp -j SOFAMESH_IN_REDIRECT" not in lines


def test_all_inbound_ports_and_dns() -> None:
    lines = _lines(InterceptPlan(inbound_ports=rules.ALL_PORTS, dns=True, dns_port=5353))
    assert "-t nat -A SOFAMESH_INBOUND -p tcp -j SOFAMESH_IN_REDIRECT" in lines
    assert "-t nat -A SOFAMESH_DNS -p udp -j REDIRECT --to-ports 5353" in lines
    assert "-t nat -A OUTPUT -p udp --dport 53 -j SOFAMESH_DNS" in lines
    assert "-t nat -A SOFAMESH_DNS -m owner --uid-owner 1337 -j RETURN" in lines


def test_without_dns_nothing_touches_udp() -> None:
    assert not [line for line in _lines(InterceptPlan()) if "udp" in line]


def test_removal_undoes_every_chain_and_jump() -> None:
    lines = [" ".join(r) for r in remove_rules()]
    for chain in rules.CHAINS:
        assert f"-t nat -F {chain}" in lines and f"-t nat -X {chain}" in lines
    installed_jumps = [
        line
        for line in _lines(InterceptPlan(dns=True))
        if " -A OUTPUT " in line or "PREROUTING" in line
    ]
    for jump in installed_jumps:
        assert jump.replace(" -A ", " -D ") in lines


def test_a_plan_that_would_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="would loop"):
        InterceptPlan(proxy_uids=(), proxy_gids=())


@pytest.mark.parametrize("bad", ["--inbound-ports=80,x", "--exclude-outbound-cidrs=300.0.0.0/8"])
def test_bad_options_exit_2(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", bad]) == 2
    assert "sofamesh-init:" in capsys.readouterr().err


def test_dry_run_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", "--proxy-uid=7", "--iptables=iptables-legacy", "--dns"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "iptables-legacy -t nat -N SOFAMESH_OUTPUT"
    assert "iptables-legacy -t nat -A SOFAMESH_DNS -m owner --uid-owner 7 -j RETURN" in out
    assert main(["--dry-run", "--remove"]) == 0
    removal = capsys.readouterr().out.splitlines()
    assert removal[-1] == "iptables -t nat -X SOFAMESH_DNS"
