#!/bin/sh
# A lab server in one directory: a bare repository holding a DataLad pipeline,
# rerund watching it through the post-receive hook, a raw-data fix pushed, and
# the reruns landing on the branch. Run it from the rerund checkout:
#   sh docs/quickstart.sh /tmp/lab
# The daemon keeps running afterwards, so `rerund jobs --config /tmp/lab/rerund.toml`
# answers; stop it with `kill $(cat /tmp/lab/rerund.pid)`.
# (tests/cli/test_quickstart.py runs this very file.)
set -eu
lab=${1:?usage: quickstart.sh DIRECTORY}
port=${RERUND_PORT:-8080}
rerund=${RERUND:-rerund}

# 0. What the quick start needs, said up front rather than as a bare exit 127.
need() {
  echo "quickstart.sh: $1 is missing: $2" >&2
  exit 127
}
command -v git >/dev/null 2>&1 || need git "install it from your distribution"
git annex version >/dev/null 2>&1 ||
  need git-annex "apt-get install git-annex (or: python3 -m pip install git-annex)"
command -v datalad >/dev/null 2>&1 || need datalad "python3 -m pip install -e '.[datalad]'"
$rerund --version >/dev/null 2>&1 || need rerund "python3 -m pip install -e '.[datalad]'"
mkdir -p "$lab" && cd "$lab"

# 1. A dataset with a two-step pipeline, recorded with `datalad run`.
datalad create -c text2git pipeline >/dev/null 2>&1
cd pipeline
mkdir -p raw code
printf '3\n1\n2\n' > raw/data.txt
printf 'sort -n "$1" > "$2"\n' > code/clean.sh
datalad save -m "raw data and code" >/dev/null
datalad run -m clean -i raw/data.txt -o clean.txt "sh code/clean.sh {inputs} {outputs}" >/dev/null 2>&1
datalad run -m count -i clean.txt -o count.txt "wc -l < {inputs} > {outputs}" >/dev/null 2>&1
cd ..

# 2. The server's bare repository, and rerund's settings for it.
git init -q --bare lab.git
git -C lab.git symbolic-ref HEAD refs/heads/main
git -C pipeline push -q "$lab/lab.git" HEAD:refs/heads/main git-annex
cat > rerund.toml <<TOML
state_dir = "state"
[http]
listen = "127.0.0.1:$port"
[[repos]]
name = "lab"
remote = "lab.git"
branch = "main"
trust = "any"   # one user on one machine; a lab sets "signed" or "pushers" (config/rerund.toml)
TOML

# 3. Install the hook and start the daemon.
$rerund hooks install lab.git --config rerund.toml
$rerund serve --config rerund.toml > rerund.log 2>&1 &
daemon=$!
echo $daemon > rerund.pid
trap 'kill $daemon' EXIT  # on any failure below, take the daemon down with us
until $rerund status --config rerund.toml >/dev/null 2>&1; do
  kill -0 $daemon 2>/dev/null || { cat rerund.log >&2; exit 1; }
  sleep 0.2
done

# 4. Someone fixes the raw data and pushes.
git clone -q lab.git work
before=$(git -C lab.git rev-list --count main)
cd work
printf '3\n1\n2\n10\n' > raw/data.txt
git commit -qam "fix raw data"
git push -q origin HEAD:main
cd ..

# 5. Watch the reruns land on the branch.
until [ "$(git -C lab.git rev-list --count main)" -ge $((before + 3)) ]; do sleep 0.2; done
git -C lab.git log --format='%h %s' -3 main
$rerund jobs --config rerund.toml
trap - EXIT  # success: the daemon stays up for you to look around
echo "rerund keeps running (pid $daemon, log $lab/rerund.log); stop it with: kill \$(cat $lab/rerund.pid)"
