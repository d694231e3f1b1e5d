# A first look at the data: pictures of events, frames and labels, event rates and class frequencies.


rule inspect_sequence:
    input:
        sequence=f"{DSEC_ROOT}/{{split}}/{{seq}}",
    output:
        picture=f"{RESULTS}/inspect/{{split}}/{{seq}}.png",
        stats=f"{RESULTS}/inspect/{{split}}/{{seq}}.json",
    log:
        f"{RESULTS}/logs/inspect_sequence/{{split}}/{{seq}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/inspect_sequence/{{split}}/{{seq}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("inspect")["threads"]
    resources:
        mem_mb=resources_of("inspect")["mem_mb"],
        runtime=resources_of("inspect")["runtime"],
        gpu=resources_of("inspect")["gpu"],
    params:
        dsec=DSEC_PARAMS,
        inspect=config_subset("inspect", "samples_per_sequence", "window_ms"),
    script:
        "../stages/inspect_sequence.py"


rule inspect_cityscapes:
    input:
        root=CITYSCAPES_ROOT,
    output:
        picture=f"{RESULTS}/inspect/cityscapes.png",
        stats=f"{RESULTS}/inspect/cityscapes.json",
    log:
        f"{RESULTS}/logs/inspect_cityscapes.log",
    benchmark:
        f"{RESULTS}/benchmarks/inspect_cityscapes.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("inspect")["threads"]
    resources:
        mem_mb=resources_of("inspect")["mem_mb"],
        runtime=resources_of("inspect")["runtime"],
        gpu=resources_of("inspect")["gpu"],
    params:
        cityscapes=config_subset("cityscapes", "classes", "grayscale"),
        inspect=config_subset("inspect", "source_images"),
    script:
        "../stages/inspect_cityscapes.py"


rule inspect_summary:
    input:
        sequences=[f"{RESULTS}/inspect/{split}/{seq}.json" for split, seq in dsec_sequences()],
        cityscapes=f"{RESULTS}/inspect/cityscapes.json",
    output:
        table=f"{RESULTS}/inspect/summary.csv",
        classes=f"{RESULTS}/inspect/class_frequencies.png",
    log:
        f"{RESULTS}/logs/inspect_summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/inspect_summary.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("inspect")["threads"]
    resources:
        mem_mb=resources_of("inspect")["mem_mb"],
        runtime=resources_of("inspect")["runtime"],
        gpu=resources_of("inspect")["gpu"],
    script:
        "../stages/inspect_summary.py"
