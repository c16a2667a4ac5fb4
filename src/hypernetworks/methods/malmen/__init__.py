"""MALMEN: least-squares model editing with a meta-trained hypernetwork (Tan et al., ICLR 2024)."""
