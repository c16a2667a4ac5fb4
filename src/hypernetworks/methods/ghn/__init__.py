"""Graph hypernetworks (GHN-2, Knyazev et al., NeurIPS 2021; GHN, Zhang et al., ICLR 2019; SMASH, Brock
et al., ICLR 2018).
"""
