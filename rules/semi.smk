# Semi-supervised retraining on the refined pseudo-labels: the labelled / unlabelled split.


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
