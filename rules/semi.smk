# Semi-supervised retraining on the refined pseudo-labels: the labelled / unlabelled split, then UniMatch.


rule split:
    input:
        labels=[f"{RESULTS}/scc/train/{seq}" for seq in config["dsec"]["sequences"]["train"]],
    output:
        labeled=f"{RESULTS}/split/labeled.txt",
        unlabeled=f"{RESULTS}/split/unlabeled.txt",
        ranking=f"{RESULTS}/split/ranking.csv",
    log:
        f"{RESULTS}/logs/split.log",
    benchmark:
        f"{RESULTS}/benchmarks/split.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("split")["threads"]
    resources:
        mem_mb=resources_of("split")["mem_mb"],
        runtime=resources_of("split")["runtime"],
        gpu=resources_of("split")["gpu"],
    params:
        split=config["split"],
    script:
        "../stages/split.py"


rule train_semi:
    input:
        unpack(semi_inputs),
    output:
        model=f"{RESULTS}/train/semi/seed{{seed}}/model.pt",
        metrics=f"{RESULTS}/train/semi/seed{{seed}}/metrics.csv",
        config=f"{RESULTS}/train/semi/seed{{seed}}/config.yaml",
    log:
        f"{RESULTS}/logs/train_semi/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_semi/seed{{seed}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("train_semi")["threads"]
    resources:
        mem_mb=resources_of("train_semi")["mem_mb"],
        runtime=resources_of("train_semi")["runtime"],
        gpu=resources_of("train_semi")["gpu"],
    params:
        semi=config["semi"],
        loop=config_subset("train", "checkpoint_every", "log_every", "num_workers", "device"),
        seed=lambda wildcards: int(wildcards.seed),
        dsec=DSEC_PARAMS,
        source=semi_source_params(),
    script:
        "../stages/train_semi.py"
