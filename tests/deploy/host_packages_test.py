#!/usr/bin/python3
"""Checks that the deploy scripts install every host package they need.

deploy/container-test and deploy/compose-test each declare a `host_packages`
array and pass it to install_host_packages (deploy/host-packages.sh). This
test, which needs no container build, checks:
  1. each array equals that script's column of the table in deploy/README.md
     ("Host packages the scripts install");
  2. each script installs its array through install_host_packages, and
     installs nothing on the host any other way;
  3. every tool a script runs on the host is in its array (a declared map
     from the commands to the Debian packages providing them), so a change
     that drops one fails here, not on a fresh machine.
Usage: host_packages_test.py REPO_ROOT
"""
import os
import re
import subprocess
import sys
import unittest

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.getcwd()
SCRIPTS = ("container-test", "compose-test")

# Host commands (as they appear in the scripts' code) -> the package that
# provides them. Every script that runs one must install its package.
TOOLS = {
    r"\bbuildah\b": "buildah",
    r"(^|[\s(])(podman|pm)\s": "podman",
    r"--runtime runc": "runc",
    r"\bdebootstrap\b": "debootstrap",
    # Compose services reach each other by name: the CNI DNS plugin.
    r"\bpodman-compose\b": "podman-compose golang-github-containernetworking-plugin-dnsname",
    r"-p 127\.0\.0\.1:|\bports:": "containernetworking-plugins",
}
# Packages podman needs at run time on Debian 12 that are only recommended
# (and so skipped by --no-install-recommends) or that its CNI plugins need.
PODMAN_RUNTIME = {"runc", "slirp4netns", "uidmap", "fuse-overlayfs",
                  "containernetworking-plugins", "iptables"}


def script_text(name):
    with open(os.path.join(ROOT, "deploy", name)) as f:
        return f.read()


def code_lines(text):
    """Lines of shell code: no comments, no here-document bodies."""
    lines, heredoc_end = [], None
    for line in text.splitlines():
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        m = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", line)
        if m and not line.lstrip().startswith("#"):
            heredoc_end = m.group(1)
        if not line.lstrip().startswith("#"):
            lines.append(line)
    return lines


def declared_packages(name):
    """The script's host_packages array, as bash itself reads it."""
    text = script_text(name)
    m = re.search(r"^host_packages=\((.*?)^\)", text, re.S | re.M)
    if not m:
        raise AssertionError(f"deploy/{name} declares no host_packages=( ... )")
    out = subprocess.run(
        ["bash", "-c", f"host_packages=({m.group(1)}); printf '%s\\n' \"${{host_packages[@]}}\""],
        check=True, capture_output=True, text=True).stdout
    return set(out.split())


def readme_table():
    """{script: set(packages)} from deploy/README.md's host-package table."""
    with open(os.path.join(ROOT, "deploy", "README.md")) as f:
        text = f.read()
    section = text.split("### Host packages the scripts install", 1)
    if len(section) != 2:
        raise AssertionError("deploy/README.md has no 'Host packages the scripts install' section")
    table = {s: set() for s in SCRIPTS}
    for line in section[1].splitlines():
        m = re.match(r"\|\s*`([a-z0-9.+-]+)`\s*\|\s*(✓?)\s*\|\s*(✓?)\s*\|", line)
        if m:
            if m.group(2):
                table["container-test"].add(m.group(1))
            if m.group(3):
                table["compose-test"].add(m.group(1))
    return table


class HostPackagesTest(unittest.TestCase):
    def test_readme_table_matches_each_script(self):
        table = readme_table()
        for name in SCRIPTS:
            with self.subTest(script=name):
                self.assertEqual(declared_packages(name), table[name])

    def test_scripts_install_their_list_and_nothing_else(self):
        for name in SCRIPTS:
            with self.subTest(script=name):
                code = "\n".join(code_lines(script_text(name)))
                self.assertIn("source deploy/host-packages.sh", code)
                self.assertIn('install_host_packages "${host_packages[@]}"', code)
                self.assertNotRegex(code, r"apt-get\s+install",
                                    "host packages are installed only by install_host_packages")

    def test_every_tool_a_script_runs_is_installed_by_it(self):
        for name in SCRIPTS:
            with self.subTest(script=name):
                code = "\n".join(code_lines(script_text(name)))
                packages = declared_packages(name)
                for pattern, needed in TOOLS.items():
                    if not re.search(pattern, code, re.M):
                        continue
                    for package in needed.split():
                        self.assertIn(package, packages,
                                      f"deploy/{name} runs {pattern!r} but does not install {package}")
                if "podman" in packages:
                    self.assertLessEqual(PODMAN_RUNTIME, packages,
                                         f"deploy/{name} runs podman without its runtime packages")

    def test_installer_installs_only_missing_packages_without_recommends(self):
        with open(os.path.join(ROOT, "deploy", "host-packages.sh")) as f:
            text = f.read()
        self.assertIn("dpkg-query", text)
        self.assertIn("--no-install-recommends", text)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
