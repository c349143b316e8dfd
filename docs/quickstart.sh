#!/bin/sh
# A lab server in one directory: a bare repository holding a DataLad pipeline,
# rerund watching it through the post-receive hook, a raw-data fix pushed, and
# the reruns landing on the branch. Run it from the rerund checkout:
#   sh docs/quickstart.sh /tmp/lab
# (tests/test_quickstart.py runs this very file.)
set -eu
lab=${1:?usage: quickstart.sh DIRECTORY}
port=${RERUND_PORT:-8080}
rerund=${RERUND:-rerund}
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
token = "change-me"
[[repos]]
name = "lab"
remote = "lab.git"
branch = "main"
trust = "any"   # one user on one machine; a lab sets "signed" or "pushers" (config/rerund.toml)
TOML

# 3. Install the hook and start the daemon.
$rerund hooks install lab.git --config rerund.toml
$rerund serve --config rerund.toml 2> rerund.log &
daemon=$!
trap 'kill $daemon' EXIT
until $rerund status --config rerund.toml >/dev/null 2>&1; do sleep 0.2; done

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
