# SeCo pseudo-label refinement: pixel semantic aggregation (psa) over SAM masks or superpixels, then
# semantic connectivity correction (scc) with a region classifier.


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
