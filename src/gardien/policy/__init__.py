"""The privacy policy, generated from the register: documents, versions, renderers, Art. 30."""
