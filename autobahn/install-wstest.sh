#!/usr/bin/env bash
# Installs the Autobahn testsuite (wstest 0.8.2, Python 2) without Docker and
# without touching the system: CPython 2.7 is unpacked from Debian 11 packages
# into a private prefix, pip and the suite are installed into it.
# Idempotent. Prints the path of the wstest wrapper.
#   EDGEWS_WSTEST_HOME  where to install (default ~/.cache/edgews/wstest)
set -euo pipefail
home="${EDGEWS_WSTEST_HOME:-$HOME/.cache/edgews/wstest}"
wrapper="$home/bin/wstest"
if [ -x "$wrapper" ] && "$wrapper" --help >/dev/null 2>&1; then
  echo "$wrapper"
  exit 0
fi
echo "installing wstest into $home" >&2
rm -rf "$home"
mkdir -p "$home"/{apt/lists/partial,debs,root,wheels,bin}
sources="$home/apt/sources.list"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main" >"$sources"
apt_opts=(-o "Dir::Etc::sourcelist=$sources" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$home/apt/lists" -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" update >"$home/apt.log" 2>&1 || { cat "$home/apt.log" >&2; exit 1; }
(cd "$home/debs" && apt-get "${apt_opts[@]}" download python2.7 python2.7-minimal \
  libpython2.7-minimal libpython2.7-stdlib libpython2.7 libpython2.7-dev python2.7-dev \
  libssl1.1 libffi7 >>"$home/apt.log" 2>&1) || { cat "$home/apt.log" >&2; exit 1; }
for deb in "$home"/debs/*.deb; do dpkg -x "$deb" "$home/root"; done
python3 -m pip download -q --no-deps -d "$home/wheels" pip==20.3.4 setuptools==44.1.1 wheel==0.37.1
export LD_LIBRARY_PATH="$home/root/usr/lib/x86_64-linux-gnu" PYTHONHOME="$home/root/usr" PYTHONWARNINGS=ignore
py="$home/root/usr/bin/python2.7"
"$py" "$home/wheels/pip-20.3.4-py2.py3-none-any.whl/pip" install -q --no-index --no-warn-script-location "$home"/wheels/*.whl
CFLAGS="-I$home/root/usr/include/python2.7 -I$home/root/usr/include" \
  "$py" -m pip install -q --no-warn-script-location autobahntestsuite==0.8.2
cat >"$wrapper" <<WRAP
#!/bin/sh
export LD_LIBRARY_PATH="$home/root/usr/lib/x86_64-linux-gnu" PYTHONHOME="$home/root/usr" PYTHONWARNINGS=ignore
exec "$py" "$home/root/usr/local/bin/wstest" "\$@"
WRAP
chmod +x "$wrapper"
"$wrapper" --help >/dev/null
echo "$wrapper"
