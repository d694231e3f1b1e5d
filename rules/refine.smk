# SeCo pseudo-label refinement: pixel semantic aggregation (psa) over SAM masks or superpixels.


rule psa:
    input:
        unpack(psa_inputs),
    output:
        folders=[
            directory(f"{RESULTS}/psa/train/{seq}") for seq in config["dsec"]["sequences"]["train"]
        ],
        quality=f"{RESULTS}/psa/quality.json",
        pictures=f"{RESULTS}/psa/pictures.png",
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
