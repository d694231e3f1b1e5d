# Event-to-image reconstruction at the protocol's label times (high-pass filter, E2VID or FireNet).


rule reconstruct:
    input:
        unpack(reconstruct_inputs),
    output:
        frames=directory(f"{RESULTS}/reconstruct/{{split}}/{{seq}}"),
        picture=f"{RESULTS}/reconstruct/{{split}}/{{seq}}.png",
        stats=f"{RESULTS}/reconstruct/{{split}}/{{seq}}.json",
    log:
        f"{RESULTS}/logs/reconstruct/{{split}}/{{seq}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/reconstruct/{{split}}/{{seq}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("reconstruct")["threads"]
    resources:
        mem_mb=resources_of("reconstruct")["mem_mb"],
        runtime=resources_of("reconstruct")["runtime"],
        gpu=resources_of("reconstruct")["gpu"],
    params:
        dsec=config_subset(
            "dsec", "num_classes", "label_layout", "sensor_size", "label_height", "ess"
        ),
        reconstruct=config["reconstruct"],
    script:
        "../stages/reconstruct.py"
