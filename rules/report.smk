# Figures of the run's HTML report, written by `snakemake --report results/<run>/report.html`. Every figure
# flagged with report() (here and in the evaluate, psa and scc rules) goes in, with its caption from report/.


rule report_figures:
    input:
        **refinement_quality_inputs(),
        metrics=[
            f"{RESULTS}/train/{model}/seed{seed}/metrics.csv"
            for model in config["evaluate"]["models"]
            for seed in config["train"]["seeds"]
        ],
        per_class=[
            f"{RESULTS}/evaluate/{model}/seed{seed}/per_class.csv"
            for model in config["evaluate"]["models"]
            for seed in config["train"]["seeds"]
        ],
        summary=f"{RESULTS}/evaluate/summary.csv",
    output:
        **report_figure_outputs(),
    log:
        f"{RESULTS}/logs/report_figures.log",
    conda:
        "../envs/evseg.yaml"
    threads: 1
    resources:
        mem_mb=resources_of("evaluate")["mem_mb"],
        runtime=resources_of("evaluate")["runtime"],
    script:
        "../stages/report_figures.py"
