"""Small pure helpers shared by operators, sensors and triggers."""
