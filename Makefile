# Two entry points for people: `make demo` and `make test`. Everything else is a
# stage of those two. Run as root on Debian 12/13 (the lab starts dockerd).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
COLLECTIONS := $(VENV)/collections
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The clock `make test` prints against its budget starts here, before a fresh machine's virtualenv.
export MSA_TEST_STARTED := $(shell date +%s)
MSA_LAB_DISTRO ?= bookworm
export MSA_LAB_DISTRO

.PHONY: demo demo-down test lint unit sanity argspecs build-check molecule venv lab-image

## demo: virtualenv, lab hosts, site.yml on the lab inventory, then what runs where
demo: venv
	python3 lab/lab.py up --lab demo --inventory inventories/lab
	ansible-playbook playbooks/lab_artifacts.yml
	ansible-playbook -i inventories/lab playbooks/site.yml
	ansible-playbook -i inventories/lab playbooks/lab_report.yml

demo-down:
	python3 lab/lab.py down --lab demo

## test: every check CI runs, each stage timed
test: venv
	scripts/run-stages

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	mkdir -p $(COLLECTIONS)/ansible_collections/msa
	ln -sfn ../../../.. $(COLLECTIONS)/ansible_collections/msa/platform
	touch $@

lab-image:
	python3 lab/lab.py image --distro $(MSA_LAB_DISTRO)
