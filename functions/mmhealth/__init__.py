"""mmhealth: the Lambda package of the multimodal health pipeline (one package, thin handlers)."""
