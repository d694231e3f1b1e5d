# The synthetic benchmark, written in the official Cityscapes and DSEC layouts under synthetic.root
# (only when enabled; with real datasets the configured roots must already exist).


if config["synthetic"]["enabled"]:

    rule synthesize_cityscapes:
        output:
            directory(f"{SYNTH}/cityscapes"),
        log:
            f"{SYNTH}/logs/synthesize_cityscapes.log",
        benchmark:
            f"{SYNTH}/benchmarks/synthesize_cityscapes.tsv"
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("synthesize_cityscapes")["threads"]
        resources:
            mem_mb=resources_of("synthesize_cityscapes")["mem_mb"],
            runtime=resources_of("synthesize_cityscapes")["runtime"],
            gpu=resources_of("synthesize_cityscapes")["gpu"],
        params:
            cfg=config["synthetic"]["cityscapes"],
            seeds=cityscapes_seeds(),
        script:
            "../stages/synthesize_cityscapes.py"

    rule synthesize_dsec:
        output:
            directory(f"{SYNTH}/dsec/{{split}}/{{seq}}"),
        log:
            f"{SYNTH}/logs/synthesize_dsec/{{split}}/{{seq}}.log",
        benchmark:
            f"{SYNTH}/benchmarks/synthesize_dsec/{{split}}/{{seq}}.tsv"
        wildcard_constraints:
            split="train|test|simulated",
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("synthesize_dsec")["threads"]
        resources:
            mem_mb=resources_of("synthesize_dsec")["mem_mb"],
            runtime=resources_of("synthesize_dsec")["runtime"],
            gpu=resources_of("synthesize_dsec")["gpu"],
        params:
            cfg=config["synthetic"]["dsec"],
            sensor_size=config["dsec"]["sensor_size"],
            label_height=config["dsec"]["label_height"],
            seed=lambda wildcards: synthetic_seed(f"dsec/{wildcards.split}/{wildcards.seq}"),
        script:
            "../stages/synthesize_dsec.py"

    rule synthesize_dsec_night:
        output:
            directory(f"{SYNTH}/dsec_night/{{seq}}"),
        log:
            f"{SYNTH}/logs/synthesize_dsec_night/{{seq}}.log",
        benchmark:
            f"{SYNTH}/benchmarks/synthesize_dsec_night/{{seq}}.tsv"
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("synthesize_dsec_night")["threads"]
        resources:
            mem_mb=resources_of("synthesize_dsec_night")["mem_mb"],
            runtime=resources_of("synthesize_dsec_night")["runtime"],
            gpu=resources_of("synthesize_dsec_night")["gpu"],
        params:
            cfg=config["synthetic"]["dsec_night"],
            sensor_size=config["dsec_night"]["sensor_size"],
            train_start=lambda wildcards: config["dsec_night"]["sequences"][wildcards.seq],
            seed=lambda wildcards: synthetic_seed(f"dsec_night/{wildcards.seq}"),
        script:
            "../stages/synthesize_dsec_night.py"
