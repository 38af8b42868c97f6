"""(registration imports are added as modules land)"""
