# SeCo pseudo-label refinement: pixel semantic aggregation (psa) over SAM masks or superpixels, then
# semantic connectivity correction (scc) with a region classifier. Offline, the SAM can first be trained on
# the reconstructions of the simulated drives (train_sam), as the demo's E2VID is (train_reconstruction).


if config["psa"]["sam"]["train"]["enabled"]:

    rule train_sam:
        input:
            drives=simulated_drives(),
            reconstructions=[
                f"{RESULTS}/reconstruct/simulated/{seq}" for seq in sequences_of("simulated")
            ],
        output:
            checkpoint=TRAINED_SAM,
            losses=f"{RESULTS}/train_sam/losses.csv",
            pictures=report(
                f"{RESULTS}/train_sam/pictures.png",
                caption="../report/train_sam.rst",
                category="Pseudo-labels",
            ),
        log:
            f"{RESULTS}/logs/train_sam.log",
        benchmark:
            f"{RESULTS}/benchmarks/train_sam.tsv"
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("train_sam")["threads"]
        resources:
            mem_mb=resources_of("train_sam")["mem_mb"],
            runtime=resources_of("train_sam")["runtime"],
            gpu=resources_of("train_sam")["gpu"],
        params:
            dsec=DSEC_PARAMS,
            input=config["train"]["input"],
            train=config["psa"]["sam"]["train"],
            variant=config["psa"]["sam"]["variant"],
            device=config["psa"]["sam"]["device"],
            amg=config["psa"]["sam"]["amg"],
        script:
            "../stages/train_sam.py"


rule psa:
    input:
        unpack(psa_inputs),
    output:
        folders=[
            directory(f"{RESULTS}/psa/train/{seq}") for seq in config["dsec"]["sequences"]["train"]
        ],
        quality=f"{RESULTS}/psa/quality.json",
        pictures=report(
            f"{RESULTS}/psa/pictures.png",
            caption="../report/psa.rst",
            category="Pseudo-labels",
        ),
    log:
        f"{RESULTS}/logs/psa.log",
    benchmark:
        f"{RESULTS}/benchmarks/psa.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("psa")["threads"]
    resources:
        mem_mb=resources_of("psa")["mem_mb"],
        runtime=resources_of("psa")["runtime"],
        gpu=resources_of("psa")["gpu"],
    params:
        dsec=DSEC_PARAMS,
        psa=config["psa"],
        input=config["train"]["input"],
    script:
        "../stages/psa.py"


if config["scc"]["pretrain"]["enabled"]:

    rule train_region_classifier:
        input:
            cityscapes=CITYSCAPES_ROOT,
        output:
            weights=TRAINED_REGION_CLASSIFIER,
            losses=f"{RESULTS}/train_region_classifier/losses.csv",
        log:
            f"{RESULTS}/logs/train_region_classifier.log",
        benchmark:
            f"{RESULTS}/benchmarks/train_region_classifier.tsv"
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("train_region_classifier")["threads"]
        resources:
            mem_mb=resources_of("train_region_classifier")["mem_mb"],
            runtime=resources_of("train_region_classifier")["runtime"],
            gpu=resources_of("train_region_classifier")["gpu"],
        params:
            dsec=config_subset("dsec", "sensor_size", "num_classes"),
            cityscapes=config_subset("cityscapes", "classes"),
            scc=config_subset("scc", "backbone", "stem_module", "window", "device", "pretrain"),
        script:
            "../stages/train_region_classifier.py"


rule scc:
    input:
        unpack(scc_inputs),
    output:
        folders=[
            directory(f"{RESULTS}/scc/train/{seq}") for seq in config["dsec"]["sequences"]["train"]
        ],
        regions=f"{RESULTS}/scc/regions.csv",
        quality=f"{RESULTS}/scc/quality.json",
        pictures=report(
            f"{RESULTS}/scc/pictures.png",
            caption="../report/scc.rst",
            category="Pseudo-labels",
        ),
    log:
        f"{RESULTS}/logs/scc.log",
    benchmark:
        f"{RESULTS}/benchmarks/scc.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("scc")["threads"]
    resources:
        mem_mb=resources_of("scc")["mem_mb"],
        runtime=resources_of("scc")["runtime"],
        gpu=resources_of("scc")["gpu"],
    params:
        dsec=DSEC_PARAMS,
        scc=config["scc"],
        input=config["train"]["input"],
    script:
        "../stages/scc.py"
